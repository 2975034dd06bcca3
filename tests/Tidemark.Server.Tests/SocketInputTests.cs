using System.Buffers;
using System.IO.Pipelines;
using System.Net.Sockets;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The input side of the block-protocol transport and its payload feature, over a real loopback socket pair.</summary>
public sealed class SocketInputTests : IDisposable
{
    private readonly LoopbackPair _sockets = new();
    private readonly Socket _server;
    private readonly Socket _client;

    public SocketInputTests()
    {
        _server = _sockets.Server;
        _client = _sockets.Client;
    }

    public void Dispose() => _sockets.Dispose();

    [Fact]
    public async Task StopReceivePoll_AReceiveThatFindsNoBytes_SleepsAtOnce_AndStillGetsTheNextBytes()
    {
        var input = new SocketInput(_server, TimeSpan.FromMilliseconds(5), 64 * 1024);
        Assert.InRange(input.ReceivePoll.TotalMicroseconds, 4_999, 5_001);

        input.StopReceivePoll();

        Assert.Equal(TimeSpan.Zero, input.ReceivePoll);
        // The receive blocks its thread (no poll first), so it runs on one of its own; the bytes come later.
        var reading = Task.Run(() => ReadAtLeastAsync(input, 4));
        await Task.Delay(50);
        _client.Send(Bytes(4, 9));
        var read = await reading.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(Bytes(4, 9), read.Buffer.Slice(0, 4).ToArray());
    }

    [Fact]
    public async Task Payload_TakesTheBufferedBytesFirst_ThenTheSocket_AndTheNextReadStartsRightAfterIt()
    {
        // A 16-byte header, a payload of 300 KiB (more than the 64 KiB buffer holds) and a trailer:
        // the reader buffers part of the payload with the header; the rest must come from the socket
        // in order, and nothing of the trailer may be lost or taken by the payload.
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var header = Bytes(16, 1);
        var payload = Bytes(300 * 1024, 2);
        var trailer = Bytes(40, 3);
        _client.Send([.. header, .. payload[..1000]]);

        var first = await ReadAtLeastAsync(input, 16);
        Assert.Equal(header, first.Buffer.Slice(0, 16).ToArray());
        input.AdvanceTo(first.Buffer.GetPosition(16));

        var sending = Task.Run(() => _client.Send([.. payload[1000..], .. trailer]));
        var received = new byte[payload.Length];
        await ((IPayloadFeature)input).ReceiveAsync(received, CancellationToken.None);
        await sending;
        Assert.Equal(payload, received);

        var next = await ReadAtLeastAsync(input, trailer.Length);
        Assert.Equal(trailer, next.Buffer.ToArray());
        input.AdvanceTo(next.Buffer.End);
        input.Complete();
    }

    [Fact]
    public async Task Payload_PeerClosesInTheMiddle_EndOfStream()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        _client.Send(Bytes(100, 4));
        _client.Shutdown(SocketShutdown.Send);

        await Assert.ThrowsAsync<EndOfStreamException>(async () => await ((IPayloadFeature)input).ReceiveAsync(new byte[200], CancellationToken.None));
    }

    [Fact]
    public async Task Read_MessageLargerThanTheBuffer_GrowsUntilItIsWhole()
    {
        // An iSCSI PDU with a large data segment is examined whole before any of it is consumed.
        var input = new SocketInput(_server, TimeSpan.Zero, 16 * 1024);
        var message = Bytes(200 * 1024, 5);
        var sending = Task.Run(() => _client.Send(message));
        var result = await ReadAtLeastAsync(input, message.Length);
        await sending;
        Assert.Equal(message, result.Buffer.ToArray());
    }

    [Fact]
    public async Task AdvanceTo_BeyondWhatWasRead_Refused()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        _client.Send(Bytes(10, 6));
        var result = await input.ReadAsync();
        var stale = new ReadOnlySequence<byte>(new byte[100]).End;
        Assert.ThrowsAny<Exception>(() => input.AdvanceTo(stale));
        input.AdvanceTo(result.Buffer.End);
    }

    [Fact]
    public async Task CancelPendingRead_EndsABlockedRead_AsCancelled()
    {
        var input = new SocketInput(_server, TimeSpan.Zero, 64 * 1024);
        var reading = Task.Run(async () => await input.ReadAsync());
        await Task.Delay(50);
        input.CancelPendingRead();
        var result = await reading.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(result.IsCanceled);
    }

    internal static async Task<ReadResult> ReadAtLeastAsync(PipeReader input, int bytes)
    {
        while (true)
        {
            var result = await input.ReadAsync();
            if (result.Buffer.Length >= bytes || result.IsCompleted)
            {
                return result;
            }

            input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    internal static byte[] Bytes(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }
}
