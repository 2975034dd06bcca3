using System.Net.Sockets;
using System.Runtime.InteropServices;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The output's <see cref="IReplySendFeature"/> over a real loopback socket pair: sends on the
/// calling thread, and payload blocks queued without a copy (ADR 0021).
/// </summary>
[Collection(nameof(ReplyBlockPoolCollection))]
public sealed class SocketReplyWriterSendTests : IDisposable
{
    private readonly LoopbackPair _sockets = new();
    private readonly Socket _server;
    private readonly Socket _client;

    public SocketReplyWriterSendTests()
    {
        _server = _sockets.Server;
        _client = _sockets.Client;
    }

    public void Dispose() => _sockets.Dispose();

    [Fact]
    public async Task SendOnThisThread_HeadersAndLentPayloads_ArriveInOrder_AlsoPastTheSocketBuffers()
    {
        _server.SendBufferSize = 64 * 1024;
        _client.ReceiveBufferSize = 64 * 1024;
        var writer = new SocketReplyWriter(_server);
        IReplySendFeature sends = writer;
        var expected = new MemoryStream();
        var rng = new Random(3);
        foreach (var payloadBytes in new[] { 64 * 1024, 100, 1 << 20, 7, 512 * 1024 })
        {
            Write(writer, expected, rng, 16);
            if (payloadBytes >= 64 * 1024)
            {
                var block = sends.RentPayload(payloadBytes, out var offset);
                Assert.Equal(0, Marshal.UnsafeAddrOfPinnedArrayElement(block, offset).ToInt64() % 4096); // page-aligned for the device read
                rng.NextBytes(block.AsSpan(offset, payloadBytes));
                expected.Write(block, offset, payloadBytes);
                sends.WritePayload(block, offset, payloadBytes);
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
        Assert.Same(block, SocketReplyWriter.BlockPool.Rent((1 << 20) + 4096));
        var received = await receiving;
        Assert.All(received[..16], b => Assert.Equal(1, b));
        Assert.All(received[16..], b => Assert.Equal(2, b));
        writer.Complete();
    }

    [Fact]
    public async Task SendOnThisThread_WhileTheSenderThreadHasEarlierReplies_SendsAfterThem()
    {
        _server.SendBufferSize = 64 * 1024;
        _client.ReceiveBufferSize = 64 * 1024;
        var writer = new SocketReplyWriter(_server);
        IReplySendFeature sends = writer;
        var expected = new MemoryStream();
        var rng = new Random(6);
        Write(writer, expected, rng, 2 << 20); // a large reply: the flush hands it to the sender thread
        Assert.False((await writer.FlushAsync()).IsCompleted);

        Write(writer, expected, rng, 100);
        var block = sends.RentPayload(256 * 1024, out var offset);
        rng.NextBytes(block.AsSpan(offset, 256 * 1024));
        expected.Write(block, offset, 256 * 1024);
        sends.WritePayload(block, offset, 256 * 1024);
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
        Assert.Same(block, SocketReplyWriter.BlockPool.Rent((64 * 1024) + 4096));
    }

    private static void Write(SocketReplyWriter writer, MemoryStream expected, Random rng, int length)
    {
        var bytes = new byte[length];
        rng.NextBytes(bytes);
        bytes.CopyTo(writer.GetSpan(length));
        writer.Advance(length);
        expected.Write(bytes);
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
        }

        return buffer;
    });
}
