using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;
using Xunit.Abstractions;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

/// <summary>
/// CONVENTIONS.md habit 14: the data path allocates nothing per I/O in steady state. Runs in the
/// non-parallel collection so the process-wide allocation counter is (nearly) ours alone.
/// </summary>
[Collection(nameof(GarbageInputCollection))]
public sealed class SteadyStateAllocationTests(ITestOutputHelper output)
{
    private const int SmallBatchPairs = 8;
    private const int LargeBatchPairs = 64;
    private const int RoundTrips = 50;

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(false, true)] // READs on the read workers (a device that prefers concurrency)
    [InlineData(true, true)]
    public async Task Transmission_PipelinedWritesAndReads_AllocateNothingPerRequest(bool structured, bool parallelReads)
    {
        var pool = new CachingMemoryPool();
        var pipeOptions = new PipeOptions(pool, pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false);
        var memory = new MemoryBlockDevice(16 * 1024 * 1024);
        IBlockDevice device = parallelReads ? new ConcurrencyDevice(memory, 32) : memory;
        var server = NbdServerHarness.Start(device, clientToServer: pipeOptions, serverToClient: pipeOptions);
        await server.Client.HandshakeAsync("vol", structured);
        var small = new Batch(SmallBatchPairs, structured, parallelReads);
        var large = new Batch(LargeBatchPairs, structured, parallelReads);

        // Warm up: device units, pipe segments, pooled buffers and state machines come into being.
        await MeasureAsync(server, small);
        await MeasureAsync(server, large);

        // Each round trip has a fixed cost in the test's own awaits; the slope between two batch
        // sizes is what one more request costs the server. The counter is process-wide, so work
        // another test left behind (finalizers, sockets closing) can only add to it: the lowest
        // of three attempts is the server's own figure, and a real per-request allocation shows
        // in every attempt.
        var perRequest = double.MaxValue;
        long smallBytes = 0, largeBytes = 0;
        for (var attempt = 0; attempt < 3 && perRequest >= 8; attempt++)
        {
            smallBytes = await MeasureAsync(server, small);
            largeBytes = await MeasureAsync(server, large);
            perRequest = Math.Min(perRequest, (largeBytes - smallBytes) / (double)(RoundTrips * 2 * (LargeBatchPairs - SmallBatchPairs)));
            output.WriteLine($"attempt {attempt + 1}: {perRequest:F2} bytes per request; {smallBytes} and {largeBytes} bytes in total");
        }

        // A real per-request allocation (a payload array, a closure, a boxed task) costs at least
        // 24 bytes each; below that is pipe-internal bookkeeping noise.
        Assert.True(perRequest < 8, $"{perRequest:F1} bytes allocated per request ({smallBytes} and {largeBytes} bytes in total)");

        // Every pipe segment the session used went back to the pool.
        await server.DisposeAsync();
        await server.Client.Input.CompleteAsync();
        Assert.Equal(0, pool.Outstanding);
    }

    private static async Task<long> MeasureAsync(NbdServerHarness server, Batch batch)
    {
        var before = GC.GetTotalAllocatedBytes(precise: true);
        for (var i = 0; i < RoundTrips; i++)
        {
            await RoundTripAsync(server, batch);
        }

        return GC.GetTotalAllocatedBytes(precise: true) - before;
    }

    private static async Task RoundTripAsync(NbdServerHarness server, Batch batch)
    {
        await server.Client.Output.WriteAsync(batch.Requests);
        var input = server.Client.Input;
        long received = 0;
        while (received < batch.ReplyBytes)
        {
            var result = await input.ReadAsync();
            received += result.Buffer.Length;
            input.AdvanceTo(result.Buffer.End);
            Assert.False(result.IsCompleted);
        }

        Assert.Equal(batch.ReplyBytes, received);
    }

    /// <summary>
    /// Pairs of 4 KiB WRITE and READ at distinct offsets, and the bytes their replies take; with
    /// <paramref name="readsTogether"/> all WRITEs first, then all READs (a lone READ runs inline).
    /// </summary>
    private sealed class Batch
    {
        public Batch(int pairs, bool structured, bool readsTogether)
        {
            var requests = new ArrayBufferWriter<byte>();
            var payload = TransmissionTests.Pattern(4096, 1);
            for (var i = 0; i < pairs; i++)
            {
                requests.Write(NbdTestClient.Request(NbdCommand.Write, (ulong)i, (ulong)i * 4096, 4096, payload: payload));
                if (!readsTogether)
                {
                    requests.Write(NbdTestClient.Request(NbdCommand.Read, (ulong)(1000 + i), (ulong)i * 4096, 4096));
                }
            }

            for (var i = 0; readsTogether && i < pairs; i++)
            {
                requests.Write(NbdTestClient.Request(NbdCommand.Read, (ulong)(1000 + i), (ulong)i * 4096, 4096));
            }

            Requests = requests.WrittenSpan.ToArray();
            var readReplyHeader = structured ? NbdStructuredReplyHeader.SizeBytes + 8 : NbdSimpleReplyHeader.SizeBytes;
            ReplyBytes = pairs * (NbdSimpleReplyHeader.SizeBytes + readReplyHeader + 4096);
        }

        public byte[] Requests { get; }

        public int ReplyBytes { get; }
    }
}
