using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Engine;
using Tidemark.Protocols.Iscsi;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.TestKit;
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
    private readonly TempDirectory _temp = new("tidemark-iscsi-splice-");
    private Pool? _pool;
    private PullingDevice? _device;
    private IscsiListener? _listener;

    public Task InitializeAsync()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 64L << 20 });
        _device = new PullingDevice(_pool.CreateVolume("vol", 16L << 20, 512));
        return Task.CompletedTask;
    }

    public async Task DisposeAsync()
    {
        if (_listener is not null)
        {
            await _listener.DisposeAsync();
        }

        _pool?.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task LargeWrites_ArePulledByTheVolume_OnTheConnectionsThread_AndReadBackIdentically()
    {
        await StartAsync(new ConnectionLimits());
        using var session = await AttachedIscsiSession.LoginAsync(_listener!.LocalEndpoint!.ToString(), Initiator, Target, Keys);
        var first = Pattern(Mib, 1);
        var second = Pattern(4 * Mib, 2);

        Assert.Equal(0, await session.WriteAsync(0x10, 0, first, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib));
        Assert.Equal(0, await session.WriteAsync(0x11, 4096, second, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib));

        Assert.Equal(first, ReadBack(0, first.Length));
        Assert.Equal(second, ReadBack(4096L * 512, second.Length));

        // Every 256 KiB segment was one pull, none on a thread-pool thread (the connection's own).
        var pulls = _device!.Pulls.ToArray();
        Assert.Equal(first.Length + second.Length, pulls.Sum(p => p.Length));
        Assert.All(pulls, p => Assert.Equal(256 * Kib, p.Length));
        Assert.All(pulls, p => Assert.False(p.OnPool));
        output.WriteLine($"pulls: {pulls.Length}, longest {pulls.Max(p => p.Elapsed).TotalMilliseconds:F2} ms, mean {pulls.Average(p => p.Elapsed.TotalMilliseconds):F2} ms");

        // A 4 KiB WRITE's data comes with its header: written from memory, not pulled.
        var small = Pattern(4096, 3);
        Assert.Equal(0, await session.WriteAsync(0x12, 16384, small, immediateBytes: 4096, segmentBytes: 4096));
        Assert.Equal(pulls.Length, _device.Pulls.Count);
        Assert.Equal(small, ReadBack(16384L * 512, small.Length));
    }

    [Fact]
    public async Task APeerThatStopsInTheMiddleOfASegment_IsClosedAtThePayloadDeadline_AndAnotherWritesTheRange()
    {
        await StartAsync(new ConnectionLimits { PayloadTimeout = TimeSpan.FromMilliseconds(500) });
        var portal = _listener!.LocalEndpoint!.ToString();
        using var stuck = await AttachedIscsiSession.LoginAsync(portal, Initiator, Target, Keys);
        await stuck.SendPartOfAWriteAsync(256 * Kib, 100 * Kib);

        using var other = await AttachedIscsiSession.LoginAsync(portal, "iqn.2026-12.dev.tidemark:other", Target, Keys);
        var data = Pattern(Mib, 4);
        var write = other.WriteAsync(0x20, 0, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);
        Assert.Equal(0, await write.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(data, ReadBack(0, data.Length));

        var watch = Stopwatch.StartNew();
        Assert.True(await stuck.ClosedByTargetAsync(TimeSpan.FromSeconds(10)));
        output.WriteLine($"the stuck connection closed {watch.ElapsedMilliseconds} ms after the other's write");
    }

    private async Task StartAsync(ConnectionLimits limits)
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Target, [new IscsiLunDefinition(0, _device!)]));
        _listener = new IscsiListener(new IPEndPoint(IPAddress.Loopback, 0), catalog, new IscsiLimits(), NullLogger<IscsiListener>.Instance, limits);
        await _listener.StartAsync(CancellationToken.None);
    }

    private byte[] ReadBack(long offset, int length)
    {
        var stored = new byte[length];
        _device!.Read(offset, stored);
        return stored;
    }

    private static byte[] Pattern(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>Forwards to the volume, recording each pull (WriteFrom): its length, whether it ran on a thread-pool thread, how long it took.</summary>
    private sealed class PullingDevice(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        public ConcurrentQueue<(int Length, bool OnPool, TimeSpan Elapsed)> Pulls { get; } = new();

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            var started = Stopwatch.GetTimestamp();
            Inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
            Pulls.Enqueue((lengthBytes, Thread.CurrentThread.IsThreadPoolThread, Stopwatch.GetElapsedTime(started)));
        }
    }
}
