using System.Net.Sockets;
using System.Runtime.InteropServices;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The tests that look at the shared block pool run alone, so no other test rents from it meanwhile.</summary>
[CollectionDefinition(nameof(ReplyBlockPoolCollection), DisableParallelization = true)]
public sealed class ReplyBlockPoolCollection;

/// <summary>
/// The output of the block-protocol connections, over a real loopback socket pair; also its
/// <see cref="IReplySendFeature"/>: sends on the calling thread, payload blocks queued without a copy (ADR 0021).
/// </summary>
[Collection(nameof(ReplyBlockPoolCollection))]
public sealed class SocketReplyWriterTests : IDisposable
{
    private readonly LoopbackPair _sockets = new();
    private readonly Socket _server;
    private readonly Socket _client;

    public SocketReplyWriterTests()
    {
        _server = _sockets.Server;
        _client = _sockets.Client;
    }

    public void Dispose() => _sockets.Dispose();

    [Fact]
    public async Task Replies_OfMixedSizes_ArriveWhole_AndInOrder()
    {
        var writer = new SocketReplyWriter(_server);
        var sizes = new[] { 16, (1 << 20) + 24, 100, 40 * 1024, 3, (3 << 20) + 16, 31 * 1024, 4096 + 24 };
        var expected = new MemoryStream();
        var receiving = ReceiveAsync(sizes.Sum());
        var rng = new Random(5);
        for (var i = 0; i < sizes.Length; i++)
        {
            var reply = new byte[sizes[i]];
            rng.NextBytes(reply);
            reply.CopyTo(writer.GetSpan(reply.Length));
            writer.Advance(reply.Length);
            expected.Write(reply);
            if (i % 3 == 2)
            {
                var flushed = await writer.FlushAsync();
                Assert.False(flushed.IsCompleted);
            }
        }

        Assert.Equal(expected.Length - ExpectedFlushedBytes(sizes), writer.UnflushedBytes);
        Assert.False((await writer.FlushAsync()).IsCompleted);
        Assert.Equal(0, writer.UnflushedBytes);
        Assert.Equal(expected.ToArray(), await receiving);

        static long ExpectedFlushedBytes(int[] sizes) => sizes.Take(6).Sum(s => (long)s);
    }

    [Theory]
    [InlineData(24, 1 << 20)]
    [InlineData(16, 32 << 20)]
    [InlineData(48, 64 * 1024)]
    public void LargeSpan_EndsOnAPageBoundary_SoWholePagesBehindAHeaderAreAligned(int header, int data)
    {
        var writer = new SocketReplyWriter(_server);
        writer.GetSpan(10); // something already in a small block
        writer.Advance(10);
        var memory = writer.GetMemory(header + data);
        Assert.True(memory.Length >= header + data);
        Assert.True(MemoryMarshal.TryGetArray<byte>(memory, out var segment));
        var dataAddress = Marshal.UnsafeAddrOfPinnedArrayElement(segment.Array!, segment.Offset + header).ToInt64();
        Assert.Equal(0, dataAddress % 4096);
        writer.Complete();
    }

    [Fact]
    public async Task Flush_AfterThePeerLeft_ReportsCompleted_AndKeepsDoingSo()
    {
        var writer = new SocketReplyWriter(_server);
        _client.Close();
        var completed = false;
        for (var i = 0; i < 50 && !completed; i++)
        {
            // The first sends after a close may still be accepted by the kernel; a reset follows.
            writer.GetSpan(64 * 1024);
            writer.Advance(64 * 1024);
            completed = (await writer.FlushAsync()).IsCompleted;
            await Task.Delay(10);
        }

        Assert.True(completed, "the writer did not notice that the peer was gone");
        writer.GetSpan(10);
        writer.Advance(10);
        Assert.True((await writer.FlushAsync()).IsCompleted);
        writer.Complete();
    }

    [Fact]
    public async Task Complete_SendsWhatWasWrittenButNotFlushed()
    {
        var writer = new SocketReplyWriter(_server);
        var receiving = ReceiveAsync(5 + (200 * 1024));
        "hello"u8.CopyTo(writer.GetSpan(5));
        writer.Advance(5);
        writer.GetSpan(200 * 1024).Fill(7);
        writer.Advance(200 * 1024);
        writer.Complete();
        var received = await receiving;
        Assert.Equal("hello"u8.ToArray(), received[..5]);
        Assert.All(received[5..], b => Assert.Equal(7, b));
        Assert.Throws<ObjectDisposedException>(() => writer.GetSpan(1));
    }

    [Fact]
    public void Advance_PastTheSpanHandedOut_Throws()
    {
        var writer = new SocketReplyWriter(_server);
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(1)); // nothing handed out yet
        var length = writer.GetSpan(40 * 1024).Length;
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(length + 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => writer.Advance(-1));
        writer.Complete();
    }

    [Fact]
    public async Task Flush_LargerThanTheSocketBuffers_WhileThePeerReadsSlowly_DeliversEverything()
    {
        _server.SendBufferSize = 64 * 1024;
        _client.ReceiveBufferSize = 64 * 1024;
        var writer = new SocketReplyWriter(_server);
        var expected = new byte[24 << 20];
        new Random(9).NextBytes(expected);
        for (var done = 0; done < expected.Length;)
        {
            var n = Math.Min(expected.Length - done, done % 3 == 0 ? 1000 : (2 << 20) + 24);
            expected.AsSpan(done, n).CopyTo(writer.GetSpan(n));
            writer.Advance(n);
            done += n;
        }

        var receiving = ReceiveAsync(expected.Length, slowly: true);
        Assert.False((await writer.FlushAsync()).IsCompleted);
        Assert.Equal(expected, await receiving);
    }

    [Fact]
    public async Task LargeReplyBlock_GoesBackToThePool_WhenFlushed()
    {
        SocketReplyWriter.BlockPool.Trim(); // room to keep the block
        var writer = new SocketReplyWriter(_server);
        var receiving = ReceiveAsync((5 << 20) + 10);
        var memory = writer.GetMemory(5 << 20);
        Assert.True(MemoryMarshal.TryGetArray<byte>(memory, out var segment));
        writer.Advance(5 << 20);
        Assert.False((await writer.FlushAsync()).IsCompleted);
        writer.WaitForSender(); // a large reply is sent by the sender thread, which then returns the block

        // Another writer's large span now gets the same block (8 MiB class, most recently returned).
        var other = new SocketReplyWriter(_server);
        Assert.True(MemoryMarshal.TryGetArray<byte>(other.GetMemory(5 << 20), out var again));
        Assert.Same(segment.Array, again.Array);
        other.Complete(new InvalidOperationException("nothing to send"));

        writer.GetSpan(10);
        writer.Advance(10);
        writer.Complete();
        Assert.Equal((5 << 20) + 10, (await receiving).Length);
    }

    [Fact]
    public async Task SmallReplies_FlushedWhileALargeOneIsStillBeingSent_FollowItInOrder()
    {
        // The peer reads slowly: the large reply stays with the sender thread for a while, and the
        // small flushes after it must queue behind it instead of overtaking it inline.
        _server.SendBufferSize = 64 * 1024;
        _client.ReceiveBufferSize = 64 * 1024;
        var writer = new SocketReplyWriter(_server);
        var expected = new MemoryStream();
        var rng = new Random(11);
        var sizes = new[] { 3 << 20, 10, 200, (1 << 20) + 16, 7, 5000, 2 << 20, 1 };
        var receiving = ReceiveAsync(sizes.Sum(), slowly: true);
        foreach (var size in sizes)
        {
            var reply = new byte[size];
            rng.NextBytes(reply);
            reply.CopyTo(writer.GetSpan(size));
            writer.Advance(size);
            expected.Write(reply);
            Assert.False((await writer.FlushAsync()).IsCompleted);
        }

        Assert.Equal(expected.ToArray(), await receiving);
        writer.Complete();
    }

    [Fact]
    public async Task Complete_WaitsForTheSenderThread_ToSendEverythingHandedToIt()
    {
        var writer = new SocketReplyWriter(_server);
        var receiving = ReceiveAsync((8 << 20) + 3, slowly: true);
        writer.GetSpan(8 << 20).Fill(9);
        writer.Advance(8 << 20);
        Assert.False((await writer.FlushAsync()).IsCompleted);
        "end"u8.CopyTo(writer.GetSpan(3));
        writer.Advance(3);
        writer.Complete();
        _server.Shutdown(SocketShutdown.Send); // what the listener does right after Complete
        var received = await receiving;
        Assert.All(received[..(8 << 20)], b => Assert.Equal(9, b));
        Assert.Equal("end"u8.ToArray(), received[(8 << 20)..]);
    }

    [Fact]
    public async Task LargeFlush_AfterThePeerLeft_ReportsCompleted_FromTheSenderThread()
    {
        var writer = new SocketReplyWriter(_server);
        _client.Close();
        var completed = false;
        for (var i = 0; i < 50 && !completed; i++)
        {
            writer.GetSpan(1 << 20);
            writer.Advance(1 << 20);
            completed = (await writer.FlushAsync()).IsCompleted;
            writer.WaitForSender();
            await Task.Delay(10);
        }

        Assert.True(completed, "the writer did not notice that the peer was gone");
        writer.Complete();
    }

    [Fact]
    public async Task CancelPendingFlush_FromAnotherThread_EndsFlushesBlockedOnAPeerThatDoesNotRead()
    {
        // The peer reads nothing: after the socket buffers and the sender's 4 MiB in flight are full,
        // a flush blocks (backpressure). Cancelling the flush from another thread (the iSCSI keepalive
        // past its deadline) must end it and let Complete return, with no thread left in a send.
        var writer = new SocketReplyWriter(_server);
        var flushing = Task.Run(async () =>
        {
            for (var i = 0; i < 256; i++)
            {
                writer.GetSpan(1 << 20);
                writer.Advance(1 << 20);
                if ((await writer.FlushAsync()).IsCompleted)
                {
                    return true;
                }
            }

            return false;
        });
        await Task.Delay(500); // it blocks after a few MiB; cancelling earlier ends it the same way
        Assert.False(flushing.IsCompleted, "the flushes did not block on a peer that does not read");

        writer.CancelPendingFlush();

        Assert.True(await flushing.WaitAsync(TimeSpan.FromSeconds(10)), "a flush after the cancel did not report the output as completed");
        await Task.Run(() => writer.Complete()).WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void BlockPool_ReusesAReturnedBlock_AndKeepsABoundedAmount()
    {
        SocketReplyWriter.BlockPool.Trim();
        var block = SocketReplyWriter.BlockPool.Rent((8 << 20) - 100);
        Assert.Equal(8 << 20, block.Length);
        SocketReplyWriter.BlockPool.Return(block);
        Assert.Same(block, SocketReplyWriter.BlockPool.Rent(8 << 20));

        var blocks = Enumerable.Range(0, 40).Select(_ => SocketReplyWriter.BlockPool.Rent(2 << 20)).ToList();
        blocks.ForEach(SocketReplyWriter.BlockPool.Return);
        Assert.InRange(SocketReplyWriter.BlockPool.RetainedBytes, 0, 32 << 20);
    }

    [Fact]
    public void BlockPool_AnAlignedPayload_TakesItsClassAndOnePage_NotTheNextClass()
    {
        SocketReplyWriter.BlockPool.Trim();
        var block = SocketReplyWriter.BlockPool.RentAligned(1 << 20);
        Assert.Equal((1 << 20) + 4096, block.Length); // a 1 MiB read's lent block: not 2 MiB

        SocketReplyWriter.BlockPool.Return(block);
        Assert.Equal(block.Length, SocketReplyWriter.BlockPool.RetainedBytes);
        Assert.NotSame(block, SocketReplyWriter.BlockPool.Rent(1 << 20)); // the plain class does not get it
        Assert.Same(block, SocketReplyWriter.BlockPool.RentAligned((1 << 20) - 100));
        Assert.Equal(0, SocketReplyWriter.BlockPool.RetainedBytes);

        var blocks = Enumerable.Range(0, 40).Select(_ => SocketReplyWriter.BlockPool.RentAligned(1 << 20)).ToList();
        blocks.ForEach(SocketReplyWriter.BlockPool.Return);
        Assert.InRange(SocketReplyWriter.BlockPool.RetainedBytes, 0, 32 << 20);
    }

    [Fact]
    public async Task SendOnThisThread_HeadersAndLentPayloads_ArriveInOrder_AlsoPastTheSocketBuffers()
    {
        var writer = SmallBufferWriter();
        IReplySendFeature sends = writer;
        var expected = new MemoryStream();
        var rng = new Random(3);
        foreach (var payloadBytes in new[] { 64 * 1024, 100, 1 << 20, 7, 512 * 1024 })
        {
            Write(writer, expected, rng, 16);
            if (payloadBytes >= 64 * 1024)
            {
                var (block, offset) = WritePayload(sends, expected, rng, payloadBytes);
                Assert.Equal(0, Marshal.UnsafeAddrOfPinnedArrayElement(block, offset).ToInt64() % 4096); // page-aligned for the device read
            }
            else
            {
                Write(writer, expected, rng, payloadBytes);
            }
        }

        var receiving = ReceiveAsync((int)expected.Length, slowly: true);
        Assert.True(sends.SendOnThisThread());
        Assert.Equal(0, writer.UnflushedBytes);
        Assert.Equal(expected.ToArray(), await receiving);
        writer.Complete();
    }

    [Fact]
    public async Task SendOnThisThread_LargeReply_IsSentByTheCaller_AndItsBlockGoesBackAtOnce()
    {
        SocketReplyWriter.BlockPool.Trim(); // room to keep the block
        var writer = new SocketReplyWriter(_server);
        IReplySendFeature sends = writer;
        var receiving = ReceiveAsync((1 << 20) + 16);
        writer.GetSpan(16).Fill(1);
        writer.Advance(16);
        var block = sends.RentPayload(1 << 20, out var offset);
        block.AsSpan(offset, 1 << 20).Fill(2);
        sends.WritePayload(block, offset, 1 << 20);

        Assert.True(sends.SendOnThisThread());

        // Sent here, not by the sender thread: the block is back in the pool before anyone waits for a sender.
        Assert.Same(block, SocketReplyWriter.BlockPool.RentAligned(1 << 20));
        var received = await receiving;
        Assert.All(received[..16], b => Assert.Equal(1, b));
        Assert.All(received[16..], b => Assert.Equal(2, b));
        writer.Complete();
    }

    [Fact]
    public async Task SendOnThisThread_WhileTheSenderThreadHasEarlierReplies_SendsAfterThem()
    {
        var writer = SmallBufferWriter();
        IReplySendFeature sends = writer;
        var expected = new MemoryStream();
        var rng = new Random(6);
        Write(writer, expected, rng, 2 << 20); // a large reply: the flush hands it to the sender thread
        Assert.False((await writer.FlushAsync()).IsCompleted);

        Write(writer, expected, rng, 100);
        WritePayload(sends, expected, rng, 256 * 1024);
        var receiving = ReceiveAsync((int)expected.Length, slowly: true);
        Assert.True(sends.SendOnThisThread()); // must not overtake the sender's reply
        Assert.Equal(expected.ToArray(), await receiving);
        writer.Complete();
    }

    [Fact]
    public async Task SendOnThisThread_AfterThePeerLeft_ReportsItAndKeepsDoingSo()
    {
        var writer = new SocketReplyWriter(_server);
        IReplySendFeature sends = writer;
        _client.Close();
        var gone = false;
        for (var i = 0; i < 50 && !gone; i++)
        {
            var block = sends.RentPayload(64 * 1024, out var offset);
            sends.WritePayload(block, offset, 64 * 1024);
            gone = !sends.SendOnThisThread();
            await Task.Delay(10);
        }

        Assert.True(gone, "the writer did not notice that the peer was gone");
        writer.GetSpan(10);
        writer.Advance(10);
        Assert.False(sends.SendOnThisThread());
        writer.Complete();
    }

    [Fact]
    public void WritePayload_AfterComplete_GivesTheBlockBackAndThrows()
    {
        SocketReplyWriter.BlockPool.Trim();
        var writer = new SocketReplyWriter(_server);
        IReplySendFeature sends = writer;
        writer.Complete();
        var block = sends.RentPayload(64 * 1024, out var offset);
        Assert.Throws<ObjectDisposedException>(() => sends.WritePayload(block, offset, 64 * 1024));
        Assert.Same(block, SocketReplyWriter.BlockPool.RentAligned(64 * 1024));
    }

    private static void Write(SocketReplyWriter writer, MemoryStream expected, Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        bytes.CopyTo(writer.GetSpan(length));
        writer.Advance(length);
        expected.Write(bytes);
    }

    /// <summary>A writer over socket buffers of 64 KiB each way, so that large replies outgrow them.</summary>
    private SocketReplyWriter SmallBufferWriter()
    {
        _server.SendBufferSize = 64 * 1024;
        _client.ReceiveBufferSize = 64 * 1024;
        return new SocketReplyWriter(_server);
    }

    /// <summary>A payload of random bytes in a lent block, queued without a copy.</summary>
    private static (byte[] Block, int Offset) WritePayload(IReplySendFeature sends, MemoryStream expected, Random rng, int length)
    {
        var block = sends.RentPayload(length, out var offset);
        rng.NextBytes(block.AsSpan(offset, length));
        expected.Write(block, offset, length);
        sends.WritePayload(block, offset, length);
        return (block, offset);
    }

    private Task<byte[]> ReceiveAsync(int length, bool slowly = false) => Task.Run(async () =>
    {
        var buffer = new byte[length];
        var done = 0;
        while (done < length)
        {
            var n = await _client.ReceiveAsync(buffer.AsMemory(done, Math.Min(length - done, slowly ? 16 * 1024 : length - done)));
            Assert.True(n > 0, $"the peer closed after {done} of {length} bytes");
            done += n;
            if (slowly && done % (1 << 20) < 16 * 1024)
            {
                await Task.Delay(1);
            }
        }

        return buffer;
    });
}
