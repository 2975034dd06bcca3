using System.Buffers.Binary;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

/// <summary>
/// Several READs in flight on one connection when the device prefers it (issue 22,
/// NbdConnection.Reads.cs): out-of-order replies, the caps, the barrier before other requests, the
/// session's end with reads in flight, and the inline path on a device that does not prefer it.
/// </summary>
public sealed class ParallelReadTests
{
    private const int ReadBytes = 4096;
    private static readonly TimeSpan Settle = TimeSpan.FromMilliseconds(150);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reads_DevicePrefersConcurrency_AllInFlightAtOnce_AnsweredAsTheyFinish(bool structured)
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol", structured);

        await server.Client.SendAsync(Reads(0, 8));
        device.WaitArrived(8);

        // Released last first: each reply leaves as its read ends, with its own cookie and data.
        for (var i = 7; i >= 0; i--)
        {
            device.Release(i * ReadBytes);
            var reply = await ReadReplyAsync(server.Client, structured);
            Assert.Equal((ulong)(100 + i), reply.Cookie);
            Assert.Equal(NbdError.None, reply.Error);
            Assert.Equal(Data(i), reply.Data);
            if (structured)
            {
                Assert.Equal((ulong)(i * ReadBytes), reply.Offset);
            }
        }

        Assert.Equal(8, device.PeakInFlight);
        Assert.Equal(8, device.AsyncReads);
        Assert.Empty(device.ReaderThreads); // no thread waited for any of them

        // The thread that ended the reads (librados's, in production) never sent a reply.
        Assert.DoesNotContain(GatedReadDevice.CompletionThreadName, server.ServerOutput.FlushThreads);
        Assert.Contains(ParallelReads.ReplierThreadName, server.ServerOutput.FlushThreads);
    }

    [Theory]
    [InlineData(32, 4, 8 << 20, ReadBytes, 4)] // the count cap
    [InlineData(32, 32, 64 << 10, 16 << 10, 4)] // the byte cap: 64 KiB hold four 16 KiB reads
    [InlineData(6, 32, 8 << 20, ReadBytes, 6)] // the device's preference below the option
    public async Task Reads_BeyondACap_WaitUntilAReadIsAnswered(int preferred, int maxReads, long maxBytes, int readBytes, int expectedPeak)
    {
        var device = Device(preferred);
        await using var server = NbdServerHarness.Start(device, new NbdServerOptions { MaxReadsInFlight = maxReads, MaxReadBytesInFlight = maxBytes });
        await server.Client.HandshakeAsync("vol");
        var requests = new List<byte>();
        for (var i = 0; i < 10; i++)
        {
            requests.AddRange(NbdTestClient.Request(NbdCommand.Read, (ulong)i, (ulong)(i * readBytes), (uint)readBytes));
        }

        await server.Client.SendAsync(requests.ToArray());
        device.WaitArrived(expectedPeak);
        await Task.Delay(Settle);
        Assert.Equal(expectedPeak, device.Arrived);

        device.Open();
        var cookies = new List<ulong>();
        for (var i = 0; i < 10; i++)
        {
            var header = await server.Client.ReadSimpleReplyAsync();
            Assert.Equal(NbdError.None, header.Error);
            await server.Client.ReadExactAsync(readBytes);
            cookies.Add(header.Cookie);
        }

        Assert.Equal(Enumerable.Range(0, 10).Select(i => (ulong)i), cookies.Order());
        Assert.Equal(expectedPeak, device.PeakInFlight);
    }

    [Fact]
    public async Task Read_LargerThanTheByteCap_IsInlineAfterTheEarlierReads()
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device, new NbdServerOptions { MaxReadBytesInFlight = 8192 });
        await server.Client.HandshakeAsync("vol");

        byte[] requests = [.. Reads(0, 1), .. NbdTestClient.Request(NbdCommand.Read, 9, 65536, 16384)];
        await server.Client.SendAsync(requests);
        device.WaitArrived(1);
        await Task.Delay(Settle);
        Assert.Equal(1, device.Arrived); // the large one waits for the barrier

        device.Open();
        Assert.Equal(100ul, (await ReadReplyAsync(server.Client, structured: false)).Cookie);
        var large = await server.Client.ReadSimpleReplyAsync();
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 9), large);
        await server.Client.ReadExactAsync(16384);
        Assert.Equal(1, device.AsyncReads);
        Assert.Single(device.ReaderThreads); // the large one, inline
    }

    [Theory]
    [InlineData(NbdCommand.Write)]
    [InlineData(NbdCommand.Flush)]
    [InlineData(NbdCommand.Trim)]
    public async Task Command_AfterReads_WaitsUntilEveryReadIsAnswered(NbdCommand command)
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");
        var newData = TransmissionTests.Pattern(ReadBytes, 99);
        var request = command switch
        {
            NbdCommand.Write => NbdTestClient.Request(command, 7, 0, ReadBytes, payload: newData),
            NbdCommand.Trim => NbdTestClient.Request(command, 7, 0, ReadBytes),
            _ => NbdTestClient.Request(command, 7, 0, 0),
        };

        byte[] requests = [.. Reads(0, 2), .. request];
        await server.Client.SendAsync(requests);
        device.WaitArrived(2);
        await Task.Delay(Settle);
        Assert.Equal(Data(0), DeviceBytes(device, 0)); // not overtaken by the write or trim
        Assert.Equal(0, device.Memory.FlushCount);

        device.Release(ReadBytes);
        Assert.Equal(101ul, (await ReadReplyAsync(server.Client, structured: false)).Cookie);
        await Task.Delay(Settle);
        Assert.Equal(Data(0), DeviceBytes(device, 0)); // one read still in flight

        device.Release(0);
        var first = await ReadReplyAsync(server.Client, structured: false);
        Assert.Equal(100ul, first.Cookie);
        Assert.Equal(Data(0), first.Data); // the data from before the write
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 7), await server.Client.ReadSimpleReplyAsync());
        Assert.Equal(command == NbdCommand.Flush ? 1 : 0, device.Memory.FlushCount);
        var expected = command switch
        {
            NbdCommand.Write => newData,
            NbdCommand.Trim => new byte[ReadBytes],
            _ => Data(0),
        };
        Assert.Equal(expected, DeviceBytes(device, 0));
    }

    [Fact]
    public async Task Disconnect_WithReadsInFlight_AnswersThemThenCloses()
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol", structured: true);

        byte[] requests = [.. Reads(0, 3), .. NbdTestClient.Request(NbdCommand.Disconnect, 0, 0, 0)];
        await server.Client.SendAsync(requests);
        device.WaitArrived(3);
        Assert.False(server.Session.IsCompleted);
        device.Open();

        var cookies = new List<ulong>();
        for (var i = 0; i < 3; i++)
        {
            cookies.Add((await ReadReplyAsync(server.Client, structured: true)).Cookie);
        }

        Assert.Empty(await server.Client.ReadToEndAsync());
        Assert.Equal(new ulong[] { 100, 101, 102 }, cookies.Order());
        Assert.Equal(NbdSessionEndReason.ClientDisconnected, (await server.EndAsync()).Reason);
    }

    [Fact]
    public async Task Abort_WithReadsInFlight_EndsOnceTheDeviceReadsReturned()
    {
        var device = Device(32);
        var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");
        await server.Client.SendAsync(Reads(0, 4));
        device.WaitArrived(4);

        server.Connection.Abort();
        await Task.Delay(Settle);
        Assert.False(server.Session.IsCompleted); // the reads still fill their buffers

        device.Open();
        Assert.Equal(NbdSessionEndReason.Aborted, (await server.EndAsync()).Reason);
        await server.DisposeAsync();
    }

    [Theory]
    [InlineData(false, StorageError.Corrupt, NbdError.IoError)]
    [InlineData(true, StorageError.OutOfRange, NbdError.InvalidArgument)]
    public async Task Read_DeviceError_GetsTheMappedErrorAndTheOthersTheirData(bool structured, StorageError error, NbdError expected)
    {
        var device = Device(32);
        device.FailAt(ReadBytes, error);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol", structured);

        await server.Client.SendAsync(Reads(0, 3));
        device.WaitArrived(3);
        device.Release(ReadBytes);
        var failed = await ReadReplyAsync(server.Client, structured);
        device.Open();
        var others = new[] { await ReadReplyAsync(server.Client, structured), await ReadReplyAsync(server.Client, structured) };

        Assert.Equal((101ul, expected), (failed.Cookie, failed.Error));
        Assert.Empty(failed.Data);
        foreach (var reply in others)
        {
            Assert.Equal(NbdError.None, reply.Error);
            Assert.Equal(Data((int)reply.Cookie - 100), reply.Data);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reads_EndedBeforeStartReturned_AreAnsweredWithoutAReplierWakeUp(bool structured)
    {
        // Reads that end at once (holes, or a device without a real asynchronous read) are queued by
        // the connection thread itself, which replies before it waits for input, and also when the
        // cap of 4 in flight makes it wait for room that only its own answers can give.
        var device = Device(32);
        device.Open();
        await using var server = NbdServerHarness.Start(device, new NbdServerOptions { MaxReadsInFlight = 4 });
        await server.Client.HandshakeAsync("vol", structured);

        await server.Client.SendAsync(Reads(0, 8));
        var cookies = new List<ulong>();
        for (var i = 0; i < 8; i++)
        {
            var reply = await ReadReplyAsync(server.Client, structured);
            Assert.Equal(Data((int)reply.Cookie - 100), reply.Data);
            cookies.Add(reply.Cookie);
        }

        Assert.Equal(Enumerable.Range(100, 8).Select(i => (ulong)i), cookies.Order());
        Assert.Equal(8, device.AsyncReads);
        Assert.DoesNotContain(ParallelReads.ReplierThreadName, server.ServerOutput.FlushThreads);

        // And the barrier before a FLUSH finds them answered.
        byte[] readsThenFlush = [.. Reads(8, 2), .. NbdTestClient.Request(NbdCommand.Flush, 7, 0, 0)];
        await server.Client.SendAsync(readsThenFlush);
        var last = new[] { await ReadReplyAsync(server.Client, structured), await ReadReplyAsync(server.Client, structured) };
        Assert.Equal(new ulong[] { 108, 109 }, last.Select(r => r.Cookie).Order());
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 7), await server.Client.ReadSimpleReplyAsync()); // simple, also under structured replies
    }

    [Fact]
    public async Task Read_Alone_IsInline_AndReadsTogetherAreStartedWithoutWaiting()
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");

        // Queue depth 1: each READ is alone, so it gains nothing from a worker.
        for (var i = 0; i < 3; i++)
        {
            device.Release(i * ReadBytes);
            await server.Client.SendAsync(Reads(i, 1));
            Assert.Equal(Data(i), (await ReadReplyAsync(server.Client, structured: false)).Data);
        }

        Assert.Equal(0, device.AsyncReads);
        Assert.Equal(3, device.ReaderThreads.Length);

        await server.Client.SendAsync(Reads(4, 2));
        device.WaitArrived(5);
        device.Open();
        Assert.Equal(new ulong[] { 104, 105 }, new[] { (await ReadReplyAsync(server.Client, structured: false)).Cookie, (await ReadReplyAsync(server.Client, structured: false)).Cookie }.Order());
        Assert.Equal(2, device.AsyncReads);
        Assert.Equal(3, device.ReaderThreads.Length);
    }

    [Fact]
    public async Task Reads_DeviceWithoutPreference_AreInlineOneAtATime()
    {
        var device = Device(1);
        await using var server = NbdServerHarness.Start(device);
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendAsync(Reads(0, 3));
        device.WaitArrived(1);
        await Task.Delay(Settle);
        Assert.Equal(1, device.Arrived);

        device.Open();
        for (var i = 0; i < 3; i++)
        {
            var reply = await ReadReplyAsync(server.Client, structured: false);
            Assert.Equal((ulong)(100 + i), reply.Cookie); // in order
            Assert.Equal(Data(i), reply.Data);
        }

        Assert.Equal(1, device.PeakInFlight);
        Assert.Equal(0, device.AsyncReads);
    }

    [Fact]
    public async Task Reads_OptionAtOne_AreInlineEvenOnADevicePreferringMore()
    {
        var device = Device(32);
        await using var server = NbdServerHarness.Start(device, new NbdServerOptions { MaxReadsInFlight = 1 });
        await server.Client.HandshakeAsync("vol");
        device.Open();

        await server.Client.SendAsync(Reads(0, 4));
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal((ulong)(100 + i), (await ReadReplyAsync(server.Client, structured: false)).Cookie);
        }

        Assert.Equal(0, device.AsyncReads);
    }

    private static GatedReadDevice Device(int preferredConcurrency)
    {
        var device = new GatedReadDevice(1024 * 1024, preferredConcurrency);
        for (var i = 0; i < 16; i++)
        {
            device.Memory.Write(i * ReadBytes, Data(i), forceUnitAccess: false);
        }

        return device;
    }

    private static byte[] Data(int index) => TransmissionTests.Pattern(ReadBytes, 1 + index);

    private static byte[] DeviceBytes(IBlockDevice device, long offset)
    {
        var bytes = new byte[ReadBytes];
        ((GatedReadDevice)device).Memory.Read(offset, bytes);
        return bytes;
    }

    /// <summary>READs of 4 KiB at blocks first..first+count-1, cookies 100+block, in one buffer.</summary>
    private static byte[] Reads(int first, int count) =>
        [.. Enumerable.Range(first, count).SelectMany(i => NbdTestClient.Request(NbdCommand.Read, (ulong)(100 + i), (ulong)(i * ReadBytes), ReadBytes))];

    /// <summary>One READ reply of <paramref name="length"/> bytes of data (none on an error), simple or structured.</summary>
    internal static async Task<(ulong Cookie, NbdError Error, byte[] Data, ulong Offset)> ReadReplyAsync(NbdTestClient client, bool structured, int length = ReadBytes)
    {
        if (!structured)
        {
            var header = await client.ReadSimpleReplyAsync();
            var data = header.Error == NbdError.None ? await client.ReadExactAsync(length) : [];
            return (header.Cookie, header.Error, data, 0);
        }

        var chunk = await client.ReadChunkAsync();
        Assert.Equal(NbdReplyFlags.Done, chunk.Header.Flags);
        if (chunk.Header.Type == NbdReplyType.Error)
        {
            return (chunk.Header.Cookie, (NbdError)BinaryPrimitives.ReadUInt32BigEndian(chunk.Payload), [], 0);
        }

        Assert.Equal(NbdReplyType.OffsetData, chunk.Header.Type);
        return (chunk.Header.Cookie, NbdError.None, chunk.Payload[8..], BinaryPrimitives.ReadUInt64BigEndian(chunk.Payload));
    }
}
