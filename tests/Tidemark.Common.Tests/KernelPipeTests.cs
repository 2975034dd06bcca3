using System.Net;
using System.Net.Sockets;

namespace Tidemark.Common.Tests;

public class KernelPipeTests
{
    [Fact]
    public void WriteReadDiscard_CountsWhatWaits()
    {
        using var pipe = KernelPipe.Create(256 << 10);
        Assert.True(pipe.CapacityBytes >= 256 << 10);
        var data = Enumerable.Range(0, 10000).Select(i => (byte)i).ToArray();

        pipe.Write(data);
        Assert.Equal(data.Length, pipe.AvailableBytes);
        var head = new byte[100];
        pipe.Read(head);
        Assert.Equal(data[..100], head);
        pipe.Discard();

        Assert.Equal(0, pipe.AvailableBytes);
    }

    [Fact]
    public void SpliceOut_WritesAtTheOffsetOfAFile()
    {
        var path = Path.GetTempFileName();
        try
        {
            using var file = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
            using var pipe = KernelPipe.Create(1 << 20);
            var data = new byte[300 << 10];
            new Random(1).NextBytes(data);
            pipe.Write(data);

            pipe.SpliceOut((int)file.DangerousGetHandle(), 8192, data.Length);

            Assert.Equal(0, pipe.AvailableBytes);
            var back = new byte[data.Length];
            Assert.Equal(back.Length, RandomAccess.Read(file, back, 8192));
            Assert.Equal(data, back);
            Assert.Equal(8192 + data.Length, RandomAccess.GetLength(file));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task SocketPayload_SplicesAndReceivesExactly_FalseWhenThePeerCloses()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = await listener.AcceptAsync(); // accepted asynchronously: may be non-blocking underneath
        var payload = new SocketPayload(server);
        using var pipe = KernelPipe.Create(1 << 20);
        var data = new byte[700 << 10];
        new Random(2).NextBytes(data);

        var sending = Task.Run(async () =>
        {
            for (var at = 0; at < data.Length; at += 50_000)
            {
                await client.SendAsync(data.AsMemory(at, Math.Min(50_000, data.Length - at)));
                await Task.Delay(1);
            }
        });
        var first = new byte[1000];
        Assert.True(payload.ReceiveExactly(first));
        var rest = new byte[data.Length - 1000];
        var got = 0;
        while (got < rest.Length)
        {
            var moved = payload.SpliceSome(pipe, rest.Length - got);
            Assert.True(moved > 0, $"splice returned {moved} with {got} of {rest.Length} bytes read");
            pipe.Read(rest.AsSpan(got, moved));
            got += moved;
        }

        await sending;
        Assert.Equal(data, first.Concat(rest).ToArray());

        await client.SendAsync(new byte[10]);
        client.Shutdown(SocketShutdown.Send);
        Assert.Equal(10, payload.SpliceSome(pipe, 20));
        Assert.Equal(0, payload.SpliceSome(pipe, 20));
        Assert.Equal(10, pipe.AvailableBytes);
        Assert.False(payload.ReceiveExactly(new byte[1]));
    }

    [Fact]
    public async Task SocketPayload_PipeFull_ReturnsMinusOneInsteadOfBlocking()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        using var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await client.ConnectAsync(listener.LocalEndPoint!);
        using var server = listener.Accept();
        var payload = new SocketPayload(server);
        using var pipe = KernelPipe.Create(4096); // a single page: full after one piece
        var data = new byte[200_000];
        new Random(3).NextBytes(data);
        await client.SendAsync(data);

        // The first piece fills the one-page pipe; asking again must say "full", not block forever.
        var first = payload.SpliceSome(pipe, data.Length);
        Assert.InRange(first, 1, 65536);
        Assert.Equal(-1, payload.SpliceSome(pipe, data.Length - first));

        var received = new byte[data.Length];
        pipe.Read(received.AsSpan(0, first));
        var got = first;
        while (got < data.Length)
        {
            var moved = payload.SpliceSome(pipe, data.Length - got);
            Assert.True(moved > 0);
            pipe.Read(received.AsSpan(got, moved));
            got += moved;
        }

        Assert.Equal(data, received);
    }
}
