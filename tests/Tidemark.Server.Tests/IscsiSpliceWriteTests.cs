using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Protocols.Iscsi;
using Tidemark.Server.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tidemark.Server.Tests;

/// <summary>
/// Large iSCSI WRITEs on the server's own transport: each data segment (immediate data and Data-Out)
/// goes to the device as a payload source (IBlockDevice.WriteFrom), which an engine volume's file
/// store takes from the socket with splice, on the connection's own thread (not the thread pool);
/// a 4 KiB WRITE keeps its path; a peer that stops in the middle of a segment meets the payload deadline.
/// </summary>
public sealed class IscsiSpliceWriteTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const int Kib = 1024;
    private const int Mib = 1 << 20;
    private const string Target = "iqn.2026-12.dev.tidemark:splice";
    private const string Initiator = "iqn.2026-12.dev.tidemark:writer";
    private const string Keys = "ImmediateData=Yes\0InitialR2T=Yes\0FirstBurstLength=262144\0MaxBurstLength=1048576\0";
    private readonly PulledVolume _volume = new("tidemark-iscsi-splice-", 512);
    private IscsiListener? _listener;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync();
        }

        _volume.Dispose();
    }

    [Fact]
    public async Task LargeWrites_ArePulledByTheVolume_OnTheConnectionsThread_AndReadBackIdentically()
    {
        await StartAsync(new ConnectionLimits());
        using var session = await AttachedIscsiSession.LoginAsync(_listener!.LocalEndpoint!.ToString(), Initiator, Target, Keys);
        var first = PulledVolume.Pattern(Mib, 1);
        var second = PulledVolume.Pattern(4 * Mib, 2);

        Assert.Equal(0, await session.WriteAsync(0x10, 0, first, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib));
        Assert.Equal(0, await session.WriteAsync(0x11, 4096, second, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib));

        Assert.Equal(first, _volume.ReadBack(0, first.Length));
        Assert.Equal(second, _volume.ReadBack(4096L * 512, second.Length));

        // Every 256 KiB segment was one pull, none on a thread-pool thread (the connection's own).
        var pulls = _volume.Device.Pulls.ToArray();
        Assert.Equal(first.Length + second.Length, pulls.Sum(p => p.Length));
        Assert.All(pulls, p => Assert.Equal(256 * Kib, p.Length));
        Assert.All(pulls, p => Assert.False(p.OnPool));
        output.WriteLine($"pulls: {pulls.Length}, longest {pulls.Max(p => p.Elapsed).TotalMilliseconds:F2} ms, mean {pulls.Average(p => p.Elapsed.TotalMilliseconds):F2} ms");

        // A 4 KiB WRITE's data comes with its header: written from memory, not pulled.
        var small = PulledVolume.Pattern(4096, 3);
        Assert.Equal(0, await session.WriteAsync(0x12, 16384, small, immediateBytes: 4096, segmentBytes: 4096));
        Assert.Equal(pulls.Length, _volume.Device.Pulls.Count);
        Assert.Equal(small, _volume.ReadBack(16384L * 512, small.Length));
    }

    [Fact]
    public async Task APeerThatStopsInTheMiddleOfASegment_IsClosedAtThePayloadDeadline_AndAnotherWritesTheRange()
    {
        await StartAsync(new ConnectionLimits { PayloadTimeout = TimeSpan.FromMilliseconds(500) });
        var portal = _listener!.LocalEndpoint!.ToString();
        using var stuck = await AttachedIscsiSession.LoginAsync(portal, Initiator, Target, Keys);
        await stuck.SendPartOfAWriteAsync(256 * Kib, 100 * Kib);

        using var other = await AttachedIscsiSession.LoginAsync(portal, "iqn.2026-12.dev.tidemark:other", Target, Keys);
        var data = PulledVolume.Pattern(Mib, 4);
        var write = other.WriteAsync(0x20, 0, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);
        Assert.Equal(0, await write.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(data, _volume.ReadBack(0, data.Length));

        var watch = Stopwatch.StartNew();
        Assert.True(await stuck.ClosedByTargetAsync(TimeSpan.FromSeconds(10)));
        output.WriteLine($"the stuck connection closed {watch.ElapsedMilliseconds} ms after the other's write");
    }

    private async Task StartAsync(ConnectionLimits limits)
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Target, [new IscsiLunDefinition(0, _volume.Device)]));
        _listener = new IscsiListener(new IPEndPoint(IPAddress.Loopback, 0), catalog, new IscsiLimits(), NullLogger<IscsiListener>.Instance, limits);
        await _listener.StartAsync(CancellationToken.None);
    }
}
