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

    /// <summary>SHA-256 of a snapshot's whole image (see <see cref="Pairing.HashSnapshotAsync"/>).</summary>
    public Task<string> HashSnapshotAsync(ServerProcess server, string snapshot) => Pairing.HashSnapshotAsync(server, snapshot, Temp.Path);

    /// <summary>Writes <paramref name="length"/> random bytes at <paramref name="offset"/> of an NBD export with qemu-io.</summary>
    public async Task WriteRandomAsync(string url, long offset, int length)
    {
        var file = Temp.Combine($"random-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, System.Security.Cryptography.RandomNumberGenerator.GetBytes(length));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {file} {offset} {length}", url)).AssertSuccess();
        File.Delete(file);
    }

    public async ValueTask DisposeAsync()
    {
        await Primary.DisposeAsync();
        await Dr.DisposeAsync();
        Temp.Dispose();
    }
}
