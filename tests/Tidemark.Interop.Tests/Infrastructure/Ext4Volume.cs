using Tidemark.Api;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// The setup every file-system interop test starts from, made once here: a server, one volume
/// exported over NBD, attached on this host (nbdfuse + loop), formatted ext4 and mounted read-write.
/// Optionally a PostgreSQL cluster initialised on it and loaded by pgbench -i (<see cref="StartPostgresAsync"/>).
/// Disposed in reverse: the mount and attachment, the client, then the server.
/// </summary>
internal sealed class Ext4Volume : IAsyncDisposable
{
    private Ext4Volume(ServerProcess server, TidemarkClient client, AttachedExport live, string volume)
    {
        Server = server;
        Client = client;
        Live = live;
        Volume = volume;
    }

    public ServerProcess Server { get; }

    public TidemarkClient Client { get; }

    /// <summary>The live volume's attachment, mounted read-write at <see cref="AttachedExport.MountPoint"/>.</summary>
    public AttachedExport Live { get; }

    public string Volume { get; }

    public static async Task<Ext4Volume> StartAsync(TempDirectory temp, string volume, long bytes, string storeCapacity)
    {
        var server = await ServerProcess.StartAsync(temp.Combine("data"), "--store-capacity", storeCapacity);
        var client = server.Client();
        try
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest(volume, bytes));
            var export = await client.CreateExportAsync(new CreateExportRequest(Target: volume));
            var live = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("live"), readOnly: false);
            try
            {
                await live.FormatExt4Async();
                await live.MountAsync("rw");
                return new Ext4Volume(server, client, live, volume);
            }
            catch
            {
                await live.DisposeAsync();
                throw;
            }
        }
        catch
        {
            client.Dispose();
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>initdb into MOUNT/pgdata, start it, load pgbench at <paramref name="scale"/>; the caller disposes the instance.</summary>
    public async Task<PostgresInstance> StartPostgresAsync(string bin, TempDirectory temp, int scale)
    {
        var data = Path.Combine(Live.MountPoint, "pgdata");
        await PostgresInstance.InitDbAsync(bin, data);
        var primary = await PostgresInstance.StartAsync(bin, data, temp.Combine("sock-primary"));
        try
        {
            await primary.RunClientAsync(TimeSpan.FromMinutes(3), "pgbench", "-i", "-q", "-s", $"{scale}", "postgres");
            return primary;
        }
        catch
        {
            await primary.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Live.DisposeAsync();
        }
        finally
        {
            Client.Dispose();
            await Server.DisposeAsync();
        }
    }
}
