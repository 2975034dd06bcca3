namespace Tidemark.Fuzz.Tests;

/// <summary>
/// The short, seeded pass of every fuzz target in the default suite: each seed as it is, then
/// mutations of it drawn from a fixed seed (so a failure reproduces; the message names the input's
/// seed and round). The long, coverage-guided run is `scripts/fuzz TARGET SECONDS` under afl-fuzz.
/// </summary>
public sealed class SeededFuzzPassTests
{
    private static readonly int Rounds = Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 5000 : 400;

    public static TheoryData<string> Targets() => [.. FuzzTargets.All.Keys];

    [Theory]
    [MemberData(nameof(Targets))]
    public void Target_Seeds_RunCleanly(string target)
    {
        foreach (var seed in Seeds.For(target))
        {
            FuzzTargets.All[target](seed);
        }
    }

    [Theory]
    [MemberData(nameof(Targets))]
    public void Target_MutatedSeeds_NeverThrowNorHang(string target)
    {
        var seeds = Seeds.For(target);
        var run = FuzzTargets.All[target];
        var random = new Random(20261124);
        for (var round = 0; round < Rounds; round++)
        {
            var input = Mutator.Mutate(seeds[round % seeds.Count], seeds[random.Next(seeds.Count)], random);
            try
            {
                run(input);
            }
            catch (Exception ex)
            {
                Assert.Fail($"{target}, round {round}: {ex.GetType().Name}: {ex.Message}\ninput ({input.Length} bytes): {Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 256)))}");
            }
        }
    }

    [Fact]
    public void Seeds_ReachTheDeepEnd_OfEachProtocol()
    {
        // The seeds must be valid sessions, or the mutations would only ever test the first checks.
        Assert.Equal(Protocols.Nbd.NbdSessionEndReason.ClientDisconnected, FuzzTargets.Nbd(Seeds.For("nbd")[0]).Reason);
        var lun = FuzzTargets.Iscsi(Seeds.For("iscsi")[0]);
        var written = new byte[1024];
        lun.Read(8 * 512, written);
        Assert.Contains(written, b => b != 0); // the WRITE(10) after login landed
        Assert.All(Seeds.For("cdb").Take(6), seed => Assert.Equal(Scsi.ScsiStatus.Good, FuzzTargets.Cdb(seed)));
        Assert.All(Seeds.For("stream"), seed => Assert.Equal(1, StreamTarget.Run(seed))); // incremental onto source, full as fresh
    }

    [Fact]
    public void Mutator_IsDeterministic_ForTheSameRandomSeed()
    {
        var seed = Seeds.For("nbd")[0];

        var first = Mutator.Mutate(seed, seed, new Random(7));
        var second = Mutator.Mutate(seed, seed, new Random(7));

        Assert.Equal(first, second);
        Assert.NotEqual(seed, first);
    }
}
