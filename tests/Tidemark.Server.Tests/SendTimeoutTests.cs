using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Nbd;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// The transport's send deadline (ConnectionLimits.SendTimeout, SO_SNDTIMEO, issue 18 §1): a client
/// that asks for large READs and reads none of the replies holds the connection's sender only until
/// the deadline; the connection is then ended and its slot given back, and the listener serves others.
/// NBD has no keepalive and iSCSI's is set far beyond the test here, so only the deadline ends them.
/// </summary>
public sealed class SendTimeoutTests
{
    private const string Target = "iqn.2026-12.dev.tidemark:send-timeout";
    private static readonly ConnectionLimits Limits = new() { SendTimeout = TimeSpan.FromSeconds(1) };

    [Fact]
    public async Task Nbd_ClientThatStopsReading_IsClosedAtTheSendDeadline_AndOthersAreStillServed()
    {
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", new MemoryBlockDevice(4 << 20), "test", false));
        await using var listener = new NbdListener(new IPEndPoint(IPAddress.Loopback, 0), null, catalog, NbdServerOptions.Default, NullLogger<NbdListener>.Instance, Limits);
        await listener.StartAsync(CancellationToken.None);
        var address = listener.LocalEndpoint!.ToString();
        using var silent = await AttachedNbdClient.ConnectAsync(address, "vol");

        // 48 MiB of replies nobody reads: far beyond the socket buffers and the reply sender's 4 MiB.
        await silent.SendReadsAsync(48, 1 << 20);

        Assert.Equal(0, await OpenAfterAsync(listener, expectedLeft: 0));
        using var other = await AttachedNbdClient.ConnectAsync(address, "vol");
        Assert.Equal(64 << 10, (await other.ReadAsync(0, 64 << 10)).Length);
    }

    [Fact]
    public async Task Iscsi_InitiatorThatStopsReading_IsClosedAtTheSendDeadline_AndOthersAreStillServed()
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Target, [new IscsiLunDefinition(0, new MemoryBlockDevice(4 << 20))]));
        var iscsiLimits = new IscsiLimits { NopInInterval = TimeSpan.FromHours(1), NopInTimeout = TimeSpan.FromHours(1) };
        await using var listener = new IscsiListener(new IPEndPoint(IPAddress.Loopback, 0), catalog, iscsiLimits, NullLogger<IscsiListener>.Instance, Limits);
        await listener.StartAsync(CancellationToken.None);
        var portal = listener.LocalEndpoint!.ToString();
        using var silent = await AttachedIscsiSession.LoginAsync(portal, "iqn.2026-12.dev.tidemark:silent", Target);

        await silent.SendReadsAsync(48, 2048);

        Assert.Equal(0, await OpenAfterAsync(listener, expectedLeft: 0));
        using var other = await AttachedIscsiSession.LoginAsync(portal, "iqn.2026-12.dev.tidemark:other", Target);
        Assert.Equal(1, listener.Admission.Open);
    }

    /// <summary>Waits (up to 30 s, far past the 1 s deadline) until the listener has that many connections open.</summary>
    private static async Task<int> OpenAfterAsync(ProtocolListener listener, int expectedLeft)
    {
        var open = listener.Admission.Open;
        for (var i = 0; i < 300 && open != expectedLeft; i++)
        {
            await Task.Delay(100);
            open = listener.Admission.Open;
        }

        return open;
    }
}
