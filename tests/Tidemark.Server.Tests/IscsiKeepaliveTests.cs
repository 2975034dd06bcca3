using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Protocols.Iscsi;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// The iSCSI keepalive on the socket transport: an initiator that stops reading leaves no thread
/// blocked in a send and no connection open past the keepalive deadline (issue 18 §1: no blocking
/// waits in the transport; docs/adr/0010-protocol-transport.md).
/// </summary>
public sealed class IscsiKeepaliveTests
{
    private const string Target = "iqn.2026-12.dev.tidemark:keepalive";

    [Fact]
    public async Task InitiatorThatStopsReading_IsClosedAtTheKeepaliveDeadline_AndLeavesNoConnectionBehind()
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Target, [new IscsiLunDefinition(0, new MemoryBlockDevice(4 << 20))]));
        var limits = new IscsiLimits { NopInInterval = TimeSpan.FromMilliseconds(200), NopInTimeout = TimeSpan.FromSeconds(1) };
        await using var listener = new IscsiListener(new IPEndPoint(IPAddress.Loopback, 0), catalog, limits, NullLogger<IscsiListener>.Instance);
        await listener.StartAsync(CancellationToken.None);
        using var session = await AttachedIscsiSession.LoginAsync(listener.LocalEndpoint!.ToString(), "iqn.2026-12.dev.tidemark:silent", Target);

        // 48 MiB of READ data nobody reads: far beyond the socket buffers and the reply sender's
        // 4 MiB, so the connection's flush blocks on the initiator with the output held.
        await session.SendReadsAsync(48, 2048);

        var open = listener.Admission.Open;
        for (var i = 0; i < 300 && open > 0; i++)
        {
            await Task.Delay(100);
            open = listener.Admission.Open;
        }

        Assert.Equal(0, open);
    }
}
