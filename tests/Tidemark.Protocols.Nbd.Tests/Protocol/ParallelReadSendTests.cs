using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

/// <summary>
/// READs in flight when the output offers <see cref="IReplySendFeature"/> (the plain TCP transport;
/// ADR 0021, "Who sends a read's reply"): the replier sends on its own thread and the thread that
/// ended a read never sends, and large READs are answered from the block the output lent them (no
/// copy), each block written or given back exactly once.
/// </summary>
public sealed class ParallelReadSendTests
{
    private const int ReadBytes = 4096;
    private const int LargeBytes = 128 * 1024;

    // The replies' pipe never pauses its writer: a flush with room completes at once, as a send does.
    private static readonly PipeOptions Unpaused = new(pauseWriterThreshold: 0, resumeWriterThreshold: 0);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Reads_OutputOffersTheFeature_TheReplierSendsOnItsOwnThread_NeverTheCompletionThread(bool structured)
    {
        var device = Device(ReadBytes * 8);
        device.FailAt(2 * ReadBytes, StorageError.Corrupt);
        SendingPipeWriter? output = null;
        await using var server = NbdServerHarness.Start(device, serverToClient: Unpaused, output: inner => output = new SendingPipeWriter(inner));
        await server.Client.HandshakeAsync("vol", structured);

        await server.Client.SendAsync(Reads(0, 6, ReadBytes));
        device.WaitArrived(6);
        var seen = new Dictionary<ulong, NbdError>();
        foreach (var i in new[] { 4, 2, 0, 5, 1, 3 })
        {
            device.Release(i * ReadBytes);
            var reply = await ParallelReadTests.ReadReplyAsync(server.Client, structured, ReadBytes);
            seen[reply.Cookie] = reply.Error;
            if (reply.Error == NbdError.None)
            {
                Assert.Equal(Pattern(((int)reply.Cookie - 100) * ReadBytes, ReadBytes), reply.Data);
            }
        }

        Assert.Equal(Enumerable.Range(100, 6).Select(c => (ulong)c), seen.Keys.Order());
        Assert.Equal(NbdError.IoError, seen[102]);
        Assert.Contains(ParallelReads.ReplierThreadName, output!.SendThreads);
        Assert.DoesNotContain(GatedReadDevice.CompletionThreadName, output.SendThreads);
        Assert.DoesNotContain(GatedReadDevice.CompletionThreadName, server.ServerOutput.FlushThreads);
        Assert.Equal(0, output.Lent); // small READs are copied into the output

        // A request after the reads still finds every one answered (the barrier).
        await server.Client.SendAsync(NbdTestClient.Request(NbdCommand.Flush, 7, 0, 0));
        Assert.Equal(new NbdSimpleReplyHeader(NbdError.None, 7), await server.Client.ReadSimpleReplyAsync());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LargeReads_AreAnsweredFromTheLentBlocks_EachWrittenOrGivenBackOnce(bool structured)
    {
        var device = Device(LargeBytes * 6);
        device.FailAt(3L * LargeBytes, StorageError.IoError);
        SendingPipeWriter? output = null;
        await using var server = NbdServerHarness.Start(device, serverToClient: Unpaused, output: inner => output = new SendingPipeWriter(inner));
        await server.Client.HandshakeAsync("vol", structured);

        await server.Client.SendAsync(Reads(0, 6, LargeBytes));
        device.WaitArrived(6);
        device.Open();
        var errors = new Dictionary<ulong, NbdError>();
        for (var n = 0; n < 6; n++)
        {
            var reply = await ParallelReadTests.ReadReplyAsync(server.Client, structured, LargeBytes);
            errors[reply.Cookie] = reply.Error;
            if (reply.Error == NbdError.None)
            {
                var i = (int)reply.Cookie - 100;
                Assert.Equal(Pattern(i * LargeBytes, LargeBytes), reply.Data);
                if (structured)
                {
                    Assert.Equal((ulong)(i * LargeBytes), reply.Offset);
                }
            }
        }

        Assert.Equal(NbdError.IoError, errors[103]);
        Assert.DoesNotContain(GatedReadDevice.CompletionThreadName, output!.SendThreads);
        Assert.Equal(6, output!.Lent);
        Assert.Equal(5, output.WrittenPayloads); // the failed read's block went back unsent
        Assert.Equal(1, output.Returned);
    }

    [Fact]
    public async Task Abort_WithLargeReadsInFlight_GivesEveryLentBlockBack()
    {
        var device = Device(LargeBytes * 4);
        SendingPipeWriter? output = null;
        var server = NbdServerHarness.Start(device, serverToClient: Unpaused, output: inner => output = new SendingPipeWriter(inner));
        await server.Client.HandshakeAsync("vol");

        await server.Client.SendAsync(Reads(0, 4, LargeBytes));
        device.WaitArrived(4);
        device.Release(LargeBytes);
        var first = await ParallelReadTests.ReadReplyAsync(server.Client, structured: false, LargeBytes);
        Assert.Equal(101ul, first.Cookie);

        server.Connection.Abort();
        device.Open(); // the device reads end by themselves; their answers are dropped
        Assert.Equal(NbdSessionEndReason.Aborted, (await server.EndAsync()).Reason);
        await server.DisposeAsync();

        Assert.Equal(4, output!.Lent);
        Assert.Equal(4, output.WrittenPayloads + output.Returned);
    }

    private static GatedReadDevice Device(int bytes)
    {
        var device = new GatedReadDevice(1024 * 1024, 32);
        device.Memory.Write(0, Pattern(0, bytes), forceUnitAccess: false);
        return device;
    }

    /// <summary>Bytes that differ at every offset of the device (a misplaced piece shows).</summary>
    private static byte[] Pattern(int offset, int length) => TransmissionTests.Pattern(1024 * 1024, 3)[offset..(offset + length)];

    private static byte[] Reads(int first, int count, int length) =>
        [.. Enumerable.Range(first, count).SelectMany(i => NbdTestClient.Request(NbdCommand.Read, (ulong)(100 + i), (ulong)((long)i * length), (uint)length))];
}
