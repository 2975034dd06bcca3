using System.Buffers;
using Tidemark.Protocols.Nbd.Tests.Infrastructure;
using Tidemark.Protocols.Nbd.Wire;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Nbd.Tests.Protocol;

[CollectionDefinition(nameof(GarbageInputCollection), DisableParallelization = true)]
public sealed class GarbageInputCollection;

/// <summary>
/// Seeded random and mutated sessions: whatever arrives, RunAsync returns a session end (never
/// throws, never hangs) and allocates a bounded amount. Runs alone so allocation counts are its own.
/// </summary>
[Collection(nameof(GarbageInputCollection))]
public sealed class GarbageInputTests
{
    private const int Iterations = 250;

    /// <summary>No input of a few KiB may make one session allocate more than this.</summary>
    private const long MaxAllocatedBytesPerSession = 8 * 1024 * 1024;

    [Fact]
    public async Task RunAsync_RandomBytes_EndsWithoutException()
    {
        for (var seed = 0; seed < Iterations; seed++)
        {
            var random = new Random(seed);
            var garbage = new byte[random.Next(0, 4096)];
            random.NextBytes(garbage);
            var prefix = (seed % 3) switch
            {
                0 => [],
                1 => ClientFlags(),
                _ => ValidSessionStart(structured: seed % 2 == 0),
            };

            await RunSessionAsync([.. prefix, .. garbage], random, seed);
        }
    }

    [Fact]
    public async Task RunAsync_MutatedValidSession_EndsWithoutException()
    {
        var valid = ValidSession();
        for (var seed = 0; seed < Iterations; seed++)
        {
            var random = new Random(seed);
            await RunSessionAsync(Mutate(valid, random), random, seed);
        }
    }

    [Fact]
    public async Task RunAsync_ValidSessionInRandomChunks_EndsWithClientDisconnect()
    {
        var valid = ValidSession();
        for (var seed = 0; seed < 50; seed++)
        {
            var end = await RunSessionAsync(valid, new Random(seed), seed);
            Assert.Equal(NbdSessionEndReason.ClientDisconnected, end.Reason);
        }
    }

    private static async Task<NbdSessionEnd> RunSessionAsync(byte[] input, Random random, int seed)
    {
        var device = new MemoryBlockDevice(64 * 1024);
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", device, "fuzz"));
        var (server, client) = DuplexPipe.CreatePair();
        var options = new NbdServerOptions { MaxOptionDataBytes = 4096, MaxOptionsPerConnection = 64 };
        var before = GC.GetTotalAllocatedBytes(precise: true);
        var session = new NbdConnection(server, catalog, options).RunAsync();

        // Partial frames must be handled: deliver the input in random pieces.
        for (var at = 0; at < input.Length;)
        {
            var length = Math.Min(input.Length - at, random.Next(1, 600));
            await client.Output.WriteAsync(input.AsMemory(at, length));
            at += length;
        }

        await client.Output.CompleteAsync();
        var end = await session.WaitAsync(NbdTestClient.Timeout);
        var allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
        Assert.True(allocated < MaxAllocatedBytesPerSession, $"seed {seed}: one session allocated {allocated} bytes");
        Assert.True(Enum.IsDefined(end.Reason), $"seed {seed}: {end}");
        await client.Input.CompleteAsync();
        return end;
    }

    private static byte[] Mutate(byte[] valid, Random random)
    {
        var bytes = valid.ToList();
        switch (random.Next(5))
        {
            case 0:
                // Flip a few bytes anywhere: magics, lengths, commands, flags.
                for (var i = random.Next(1, 6); i > 0; i--)
                {
                    bytes[random.Next(bytes.Count)] ^= (byte)random.Next(1, 256);
                }

                break;
            case 1:
                // Cut the session short.
                return [.. bytes.Take(random.Next(bytes.Count))];
            case 2:
                // Duplicate a range (repeated options and requests).
                var start = random.Next(bytes.Count);
                var count = random.Next(Math.Min(200, bytes.Count - start));
                bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(start, count));
                break;
            case 3:
                // Insert random bytes.
                var junk = new byte[random.Next(1, 64)];
                random.NextBytes(junk);
                bytes.InsertRange(random.Next(bytes.Count), junk);
                break;
            default:
                // Set a 32-bit field to a huge value: length fields are where caps matter.
                var at = random.Next(bytes.Count - 4);
                bytes[at] = 0xff;
                bytes[at + 1] = (byte)random.Next(256);
                break;
        }

        return [.. bytes];
    }

    private static byte[] ClientFlags() => [0, 0, 0, (byte)(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes)];

    private static byte[] ValidSessionStart(bool structured)
    {
        var session = new ArrayBufferWriter<byte>();
        session.Write(ClientFlags());
        if (structured)
        {
            session.Write(NbdTestClient.Option(NbdOptionType.StructuredReply, []));
            session.Write(NbdTestClient.Option(NbdOptionType.SetMetaContext, NbdTestClient.MetaContextData("vol", "base:allocation")));
        }

        session.Write(NbdTestClient.Option(NbdOptionType.List, []));
        session.Write(NbdTestClient.Option(NbdOptionType.Info, NbdTestClient.InfoData("vol", NbdInfoType.Name, NbdInfoType.BlockSize)));
        session.Write(NbdTestClient.Option(NbdOptionType.ListMetaContext, NbdTestClient.MetaContextData("vol", "base:")));
        session.Write(NbdTestClient.Option(NbdOptionType.Go, NbdTestClient.InfoData("vol", NbdInfoType.BlockSize)));
        return session.WrittenSpan.ToArray();
    }

    private static byte[] ValidSession()
    {
        var session = new ArrayBufferWriter<byte>();
        session.Write(ValidSessionStart(structured: true));
        session.Write(NbdTestClient.Request(NbdCommand.Write, 1, 4096, 8192, NbdCommandFlags.Fua, TransmissionTests.Pattern(8192, 1)));
        session.Write(NbdTestClient.Request(NbdCommand.Read, 2, 0, 16384));
        session.Write(NbdTestClient.Request(NbdCommand.BlockStatus, 3, 0, 65536));
        session.Write(NbdTestClient.Request(NbdCommand.Trim, 4, 4096, 4096));
        session.Write(NbdTestClient.Request(NbdCommand.WriteZeroes, 5, 0, 8192, NbdCommandFlags.FastZero));
        session.Write(NbdTestClient.Request(NbdCommand.Cache, 6, 0, 4096));
        session.Write(NbdTestClient.Request(NbdCommand.Flush, 7, 0, 0));
        session.Write(NbdTestClient.Request(NbdCommand.BlockStatus, 8, 0, 4096, NbdCommandFlags.RequestOne));
        session.Write(NbdTestClient.Request(NbdCommand.Disconnect, 9, 0, 0));
        return session.WrittenSpan.ToArray();
    }
}
