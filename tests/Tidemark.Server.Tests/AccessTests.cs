using System.Net;
using System.Net.Http.Json;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Who can read the data on disk, and where the API may create or open stores.</summary>
public sealed class AccessTests : ServerTest
{
    private const UnixFileMode GroupOrOther = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;


    [Fact]
    public void FirstStart_DataDirectoryAndEverythingInIt_AreTheOwnersOnly()
    {
        var loose = Directory.EnumerateFileSystemEntries(Data, "*", SearchOption.AllDirectories)
            .Append(Data)
            .Where(p => (File.GetUnixFileMode(p) & GroupOrOther) != 0)
            .ToList();

        Assert.True(Directory.Exists(Path.Combine(Data, "pool", "meta")));
        Assert.Empty(loose);
    }

    [Fact]
    public async Task Restart_LoosenedModes_AreWarnedAboutAndFixed()
    {
        await Server.StopAsync();
        var store = Directory.EnumerateFiles(Path.Combine(Data, "pool"), "store-*").First();
        var meta = Path.Combine(Data, "pool", "meta", "IDENTITY"); // RocksDB keeps this one file as it is across opens
        File.SetUnixFileMode(Data, (UnixFileMode)Convert.ToInt32("755", 8));
        File.SetUnixFileMode(store, (UnixFileMode)Convert.ToInt32("644", 8));
        File.SetUnixFileMode(meta, (UnixFileMode)Convert.ToInt32("644", 8));

        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        using var client = Server.Client();
        var events = await client.ListEventsAsync(kind: "server.permissions");

        Assert.Equal((UnixFileMode)Convert.ToInt32("700", 8), File.GetUnixFileMode(Data));
        Assert.Equal((UnixFileMode)Convert.ToInt32("600", 8), File.GetUnixFileMode(store));
        Assert.Equal((UnixFileMode)Convert.ToInt32("600", 8), File.GetUnixFileMode(meta));
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Data, "*", SearchOption.AllDirectories), p => (File.GetUnixFileMode(p) & GroupOrOther) != 0);
        Assert.Contains("readable by other users", Server.Log, StringComparison.Ordinal);
        Assert.Contains(store, Assert.Single(events).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", HttpStatusCode.BadRequest, "empty")]
    [InlineData("/etc/passwd", HttpStatusCode.Conflict, "exists")]
    [InlineData("/proc/self/mem", HttpStatusCode.BadRequest, "kernel interface")]
    [InlineData("/dev/null", HttpStatusCode.Conflict, "not a block device")]
    [InlineData("/tmp", HttpStatusCode.BadRequest, "is a directory")]
    [InlineData("../../outside.dat", HttpStatusCode.BadRequest, "outside the data directory")]
    [InlineData("no-such-dir/store.dat", HttpStatusCode.BadRequest, "does not exist")]
    public async Task AddStore_HostilePath_IsAClearProblem(string path, HttpStatusCode status, string says)
    {
        using var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);

        using var response = await http.PostAsJsonAsync("api/v1/pool/stores", new AddStoreRequest(path, 1 << 20), ApiJson.Options);
        var problem = await response.Content.ReadFromJsonAsync<ProblemDto>(ApiJson.Options);

        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains(says, problem!.Detail, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.GetFullPath(Path.Combine(Data, path))) && path.StartsWith("..", StringComparison.Ordinal));
    }

    [Fact]
    public async Task AddStore_RelativePath_IsCreatedUnderTheDataDirectory()
    {
        using var client = Server.Client();

        var pool = await client.AddStoreAsync(new AddStoreRequest("extra-store.dat", 1 << 20));

        var created = Path.Combine(Data, "extra-store.dat");
        Assert.Contains(pool.Stores, s => s.Path == created);
        Assert.Equal((UnixFileMode)Convert.ToInt32("600", 8), File.GetUnixFileMode(created));
    }
}
