using System.Buffers;
using System.Diagnostics;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// The transport's payload source (SocketInput.PayloadSource.cs) over a real loopback socket pair into
/// a temporary file: the bytes the receive buffer held and the bytes spliced from the socket land at
/// their offsets, the next request starts right after the payload, and a peer that closes or goes
/// silent fails the source instead of hanging.
/// </summary>
public sealed class SocketInputSourceTests : IDisposable
{
    private readonly LoopbackPair _sockets = new();
    private readonly Socket _server;
    private readonly Socket _client;
    private readonly TempDirectory _temp = new("tidemark-source-");

    public SocketInputSourceTests()
    {
        _server = _sockets.Server;
        _client = _sockets.Client;
    }

    public void Dispose()
    {
        _sockets.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public async Task FillFile_BufferedBytesThenSplicedBytes_LandAtTheirOffsets_AndTheNextReadStartsAfterThePayload()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var header = Bytes(16, 1);
        var payload = Bytes(768 * 1024, 2);
        var trailer = Bytes(40, 3);
        _client.Send([.. header, .. payload[..5000]]);
        var first = await ReadAtLeastAsync(input, 16);
        input.AdvanceTo(first.Buffer.GetPosition(16));

        var sending = Task.Run(() => _client.Send([.. payload[5000..], .. trailer]));
        var source = ((IPayloadFeature)input).OpenSource(payload.Length);
        Assert.NotNull(source);
        Assert.Equal(payload.Length, source.RemainingBytes);
        using (var file = File.OpenHandle(_temp.Combine("store"), FileMode.CreateNew, FileAccess.ReadWrite))
        {
            // Three pulls that cut across the buffered part and the pipe, at a file offset of 1 MiB.
            source.FillFile(file, 1 << 20, 4096);
            source.FillFile(file, (1 << 20) + 4096, 32 * 1024);
            source.FillFile(file, (1 << 20) + 4096 + (32 * 1024), payload.Length - 4096 - (32 * 1024));
        }

        await sending;
        Assert.Equal(0, source.RemainingBytes);
        var written = File.ReadAllBytes(_temp.Combine("store"));
        Assert.Equal(payload, written[(1 << 20)..]);
        var next = await ReadAtLeastAsync(input, trailer.Length);
        Assert.Equal(trailer, next.Buffer.ToArray());
        input.AdvanceTo(next.Buffer.End);
        input.Complete();
    }

    [Fact]
    public async Task OpenSource_MovesThePayloadsBufferedBytesIntoThePipe_AndLeavesWhatFollowsItBuffered()
    {
        // The whole request (header, payload, next header) in the receive buffer: the source takes the
        // payload's bytes out of it at once (so the store gets the payload as one run of splices, whole
        // pages from its start, docs/BENCHMARKS.md session 24) and leaves the next header where it was.
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var header = Bytes(16, 20);
        var payload = Bytes(20_000, 21);
        var trailer = Bytes(40, 22);
        _client.Send([.. header, .. payload, .. trailer]);
        var first = await ReadAtLeastAsync(input, header.Length + payload.Length + trailer.Length);
        input.AdvanceTo(first.Buffer.GetPosition(header.Length));

        var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;

        Assert.Equal(trailer.Length, input.BufferedBytes);
        Assert.Equal(payload.Length, source.RemainingBytes);
        using (var file = File.OpenHandle(_temp.Combine("store"), FileMode.CreateNew, FileAccess.ReadWrite))
        {
            source.FillFile(file, 8192, payload.Length);
        }

        Assert.Equal(payload, File.ReadAllBytes(_temp.Combine("store"))[8192..]);
        var next = await input.ReadAsync();
        Assert.Equal(trailer, next.Buffer.ToArray());
        input.AdvanceTo(next.Buffer.End);
        input.Complete();
    }

    [Fact]
    public async Task OpenSource_ForMoreThanThePipe_TakesAPipesWorth_AndFillThroughMemoryThenSkip_KeepsTheInputInStep()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var payload = Bytes(3 << 20, 4);
        var trailer = Bytes(24, 5);
        var sending = Task.Run(() => _client.Send([.. payload, .. trailer]));

        var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;
        var firstPiece = source.RemainingBytes;
        Assert.InRange(firstPiece, 256 * 1024, 1 << 20);
        Assert.Equal(0, firstPiece % 4096);
        var start = new byte[10_000];
        source.Fill(start);
        Assert.Equal(payload[..10_000], start);
        source.Skip();
        Assert.Equal(0, source.RemainingBytes);

        // The rest of the payload as the next sources, then the trailer.
        for (var taken = firstPiece; taken < payload.Length;)
        {
            var next = ((IPayloadFeature)input).OpenSource(payload.Length - taken)!;
            var piece = new byte[next.RemainingBytes];
            next.Fill(piece);
            Assert.Equal(payload[taken..(taken + piece.Length)], piece);
            taken += piece.Length;
        }

        await sending;
        var after = await ReadAtLeastAsync(input, trailer.Length);
        Assert.Equal(trailer, after.Buffer.ToArray());
        input.AdvanceTo(after.Buffer.End);
    }

    [Fact]
    public void OffersSource_InTheDataPhase_IsTrue_AndFalseOnceTheInputCompleted()
    {
        // iSCSI chooses a WRITE's path by it before the first segment (IscsiConnection.WritePieces.cs).
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);

        Assert.Equal(SplicePipe.IsSupported, ((IPayloadFeature)input).OffersSource);
        input.Complete();
        Assert.False(((IPayloadFeature)input).OffersSource);
    }

    [Fact]
    public void OpenSource_PeerClosesInTheMiddle_FailsAsPeerClosed()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        _client.Send(Bytes(100, 6));
        _client.Shutdown(SocketShutdown.Send);

        var ex = Assert.Throws<PayloadSourceException>(() => ((IPayloadFeature)input).OpenSource(200 * 1024));

        Assert.True(ex.PeerClosed);
    }

    [Fact]
    public void OpenSource_PeerGoesSilent_TheDeadlineEndsTheWait()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024) { PayloadTimeout = TimeSpan.FromMilliseconds(300) };
        _client.Send(Bytes(100 * 1024, 7));
        var clock = Stopwatch.StartNew();

        var ex = Assert.Throws<PayloadSourceException>(() => ((IPayloadFeature)input).OpenSource(512 * 1024));

        Assert.False(ex.PeerClosed);
        Assert.Contains("deadline", ex.Message, StringComparison.Ordinal);
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task OpenSource_APayloadArrivingInPieces_WithTheReceivePoll_WaitsWithoutSleeping_AndWithoutIt_Sleeps()
    {
        // The receive poll covers a payload's waits too: pieces a few milliseconds apart are waited
        // for by spinning (a second's poll here, far above the gaps), and the bytes land as sent.
        // Without the poll, the same payload sleeps in poll(2) for its first piece at least.
        foreach (var (poll, sleeps) in new[] { (TimeSpan.FromSeconds(1), false), (TimeSpan.Zero, true) })
        {
            using var pair = new LoopbackPair();
            var input = new SocketInput(pair.Server, poll, 64 * 1024);
            var payload = Bytes(256 * 1024, 14);
            var sending = Task.Run(async () =>
            {
                for (var at = 0; at < payload.Length; at += 64 * 1024)
                {
                    await Task.Delay(20);
                    pair.Client.Send(payload.AsSpan(at, 64 * 1024));
                }
            });

            var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;
            var taken = new byte[payload.Length];
            source.Fill(taken);
            await sending;

            Assert.Equal(payload, taken);
            if (sleeps)
            {
                Assert.True(input.PayloadSleeps > 0, "without a receive poll the wait sleeps");
            }
            else
            {
                Assert.Equal(0, input.PayloadSleeps);
            }

            input.Complete();
        }
    }

    [Fact]
    public void OpenSource_PeerGoesSilent_WithTheReceivePoll_TheDeadlineStillEndsTheWait()
    {
        var input = new SocketInput(_server, TimeSpan.FromMilliseconds(10), 64 * 1024) { PayloadTimeout = TimeSpan.FromMilliseconds(300) };
        _client.Send(Bytes(100 * 1024, 15));

        var ex = Assert.Throws<PayloadSourceException>(() => ((IPayloadFeature)input).OpenSource(512 * 1024));

        Assert.Contains("deadline", ex.Message, StringComparison.Ordinal);
        Assert.True(input.PayloadSleeps > 0, "past the receive poll the wait sleeps until the deadline");
    }

    [Fact]
    public async Task CancelPendingRead_EndsASourceWaitingForItsPayload()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        _client.Send(Bytes(4096, 8));
        var opening = Task.Run(() => ((IPayloadFeature)input).OpenSource(512 * 1024));
        await Task.Delay(100);

        input.CancelPendingRead();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => opening.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task FillFile_TheFileRefusesTheWrite_IsTheFilesError_AndSkipStillKeepsTheInputInStep()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var payload = Bytes(512 * 1024, 9);
        var trailer = Bytes(32, 10);
        var sending = Task.Run(() => _client.Send([.. payload, .. trailer]));
        var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;
        File.WriteAllBytes(_temp.Combine("readonly"), []);
        using (var readOnly = File.OpenHandle(_temp.Combine("readonly"), FileMode.Open, FileAccess.Read))
        {
            var ex = Assert.ThrowsAny<IOException>(() => source.FillFile(readOnly, 0, payload.Length));
            Assert.IsNotType<PayloadSourceException>(ex);
        }

        Assert.True(source.RemainingBytes > 0);
        source.Skip();
        await sending;
        var next = await ReadAtLeastAsync(input, trailer.Length);
        Assert.Equal(trailer, next.Buffer.ToArray());
        input.AdvanceTo(next.Buffer.End);
    }

    [Fact]
    public async Task Read_RightAfterASource_TakesAHeadersWorth_SoTheNextPayloadStaysForTheNextSource()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 256 * 1024);
        var payload = Bytes(64 * 1024, 12);
        var next = Bytes(200 * 1024, 13);
        var sending = Task.Run(() => _client.Send([.. payload, .. next]));
        var source = ((IPayloadFeature)input).OpenSource(payload.Length)!;
        source.Fill(new byte[payload.Length]);
        await Task.Delay(50); // more than 8 KiB of the rest is in the socket

        var first = await input.ReadAsync();
        Assert.InRange(first.Buffer.Length, 1, 8 * 1024);
        Assert.Equal(next[..(int)first.Buffer.Length], first.Buffer.ToArray());
        input.AdvanceTo(first.Buffer.Start, first.Buffer.End);

        // Later reads are full-size again.
        var second = await input.ReadAsync();
        Assert.True(second.Buffer.Length > 8 * 1024, $"{second.Buffer.Length} bytes");
        var taken = second.Buffer.Length;
        input.AdvanceTo(second.Buffer.End);
        while (taken < next.Length)
        {
            var rest = await input.ReadAsync();
            taken += rest.Buffer.Length;
            input.AdvanceTo(rest.Buffer.End);
        }

        await sending;
    }

    [Fact]
    public async Task Read_WhileASourceHasBytesLeft_IsRefused()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        _client.Send(Bytes(8192, 11));
        var source = ((IPayloadFeature)input).OpenSource(8192)!;
        source.Fill(new byte[4096]);

        await Assert.ThrowsAsync<InvalidOperationException>(async () => await input.ReadAsync());
        source.Skip();
    }

    private static Task<ReadResult> ReadAtLeastAsync(PipeReader input, int bytes) => SocketInputTests.ReadAtLeastAsync(input, bytes);

    private static byte[] Bytes(int length, int seed) => SocketInputTests.Bytes(length, seed);
}
