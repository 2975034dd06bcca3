using System.Security.Cryptography;
using Tidemark.Api;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>A primary and a DR site: two real `tidemark serve` processes with their own data directories.</summary>
internal sealed class TwoServers : IAsyncDisposable
{
    private TwoServers(TempDirectory temp, ServerProcess primary, ServerProcess dr)
    {
        Temp = temp;
        Primary = primary;
        Dr = dr;
    }

    public TempDirectory Temp { get; }

    public ServerProcess Primary { get; }

    public ServerProcess Dr { get; }

    public static async Task<TwoServers> StartAsync(params string[] primaryArguments)
    {
        var temp = new TempDirectory();
        ServerProcess? primary = null;
        try
        {
            primary = await ServerProcess.StartAsync(temp.Combine("primary"), primaryArguments);
            return new TwoServers(temp, primary, await ServerProcess.StartAsync(temp.Combine("dr")));
        }
        catch
        {
            if (primary is not null)
            {
                await primary.DisposeAsync();
            }

            temp.Dispose();
            throw;
        }
    }

    /// <summary>SHA-256 of a snapshot's whole image, read by nbdcopy through a temporary read-only NBD export.</summary>
    public async Task<string> HashSnapshotAsync(ServerProcess server, string snapshot)
    {
        using var client = server.Client();
        var name = $"hash-{Guid.NewGuid():N}";
        var export = await client.CreateExportAsync(new CreateExportRequest(snapshot, name, "nbd"));
        var file = Temp.Combine($"{name}.raw");
        try
        {
            (await ProcessRunner.RunAsync("nbdcopy", export.Url!, file)).AssertSuccess();
            await using var stream = File.OpenRead(file);
            return Convert.ToHexString(await SHA256.HashDataAsync(stream));
        }
        finally
        {
            await client.DeleteExportAsync(name);
            File.Delete(file);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Primary.DisposeAsync();
        await Dr.DisposeAsync();
        Temp.Dispose();
    }
}
