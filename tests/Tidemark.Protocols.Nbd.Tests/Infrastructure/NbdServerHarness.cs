using System.IO.Pipelines;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>One <see cref="NbdConnection"/> over in-memory pipes, with a client for the other end.</summary>
internal sealed class NbdServerHarness : IAsyncDisposable
{
    public const string ExportName = "vol";
    public const string ExportDescription = "test volume";

    private NbdServerHarness(IBlockDevice device, NbdExportCatalog catalog, NbdServerOptions? options, PipeOptions? clientToServer, PipeOptions? serverToClient, Func<PipeWriter, PipeWriter>? output, IConnectionPhase? phase)
    {
        Device = device;
        Catalog = catalog;
        var (server, client) = DuplexPipe.CreatePair(clientToServer, serverToClient);
        ServerOutput = new CountingPipeWriter(server.Output);
        Connection = new NbdConnection(new DuplexPipe(server.Input, output?.Invoke(ServerOutput) ?? ServerOutput), catalog, options, phase: phase);
        Client = new NbdTestClient(client);
        Session = Task.Run(() => Connection.RunAsync());
    }

    public IBlockDevice Device { get; }

    public MemoryBlockDevice Memory => (MemoryBlockDevice)Device;

    public NbdExportCatalog Catalog { get; }

    public NbdConnection Connection { get; }

    public NbdTestClient Client { get; }

    public CountingPipeWriter ServerOutput { get; }

    public Task<NbdSessionEnd> Session { get; }

    public static NbdServerHarness Start(
        IBlockDevice? device = null,
        NbdServerOptions? options = null,
        NbdExportCatalog? catalog = null,
        bool readOnlyExport = false,
        PipeOptions? clientToServer = null,
        PipeOptions? serverToClient = null,
        Func<PipeWriter, PipeWriter>? output = null,
        IConnectionPhase? phase = null)
    {
        device ??= new MemoryBlockDevice(1024 * 1024);
        if (catalog is null)
        {
            catalog = new NbdExportCatalog { DefaultExportName = ExportName };
            catalog.Set(new NbdExport(ExportName, device, ExportDescription, readOnlyExport));
        }

        return new NbdServerHarness(device, catalog, options, clientToServer, serverToClient, output, phase);
    }

    public Task<NbdSessionEnd> EndAsync() => Session.WaitAsync(NbdTestClient.Timeout);

    public async ValueTask DisposeAsync()
    {
        Connection.Abort();
        await Client.CompleteAsync();
        await EndAsync();
    }
}
