using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Issue 16's model test over the whole cycle: random (seeded: a failure repeats) sequences of
/// writes at either site, snapshots and read-write export attempts at the replica's site, syncs over
/// a good or a breaking link, kill -9 and restart of either server, promote at the DR site, reverse
/// (fail-back, with the split-brain consent when home wrote after the common snapshot), and the
/// switch back by promote at home, or, when the DR site is cut off then, by demote there. Checked
/// after every step: every replicated snapshot at the receiving site hashes equal to the sender's
/// snapshot of the same name; a promoted image is one of the other site's snapshots; writes a
/// fail-back discards are kept in a snapshot the output and the event log name. One cycle by
/// default, about five with TIDEMARK_LONG=1.
/// </summary>
public sealed class ReplicaModelTests(Xunit.Abstractions.ITestOutputHelper output) : IAsyncLifetime
{
    private const long Size = 16 << 20;
    private static bool Long => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1";

    private readonly TempDirectory _temp = new();
    private readonly int _homePort = FreePort.FindStable();
    private readonly int _drPort = FreePort.FindStable();
    private ServerProcess _home = null!;
    private ServerProcess _dr = null!;
    private CuttingProxy _proxy = null!; // home -> DR: cut to break syncs and the demotion request

    private enum Phase
    {
        Forward,
        Promoted,
        Reversed,
    }

    /// <summary>What each visit of a phase includes before it may end.</summary>
    private static readonly Dictionary<Phase, string[]> Owed = new()
    {
        [Phase.Forward] = ["sync over a breaking link", "kill -9 dr"],
        [Phase.Promoted] = ["write home", "kill -9 home"],
        [Phase.Reversed] = ["kill -9 dr", "kill -9 home"],
    };

    public async Task InitializeAsync()
    {
        _home = await StartAsync("home", _homePort);
        _dr = await StartAsync("dr", _drPort);
        using var home = _home.Client();
        using var dr = _dr.Client();
        var homeId = await home.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();
        _proxy = new CuttingProxy(IPEndPoint.Parse(drId.ReplicationAddress!), cutAfterBytes: 256 << 10, cuts: 0);
        await home.AddPartnerAsync(new AddPartnerRequest("dr", _proxy.Address, drId.Fingerprint));
        await dr.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));
    }

    public async Task DisposeAsync()
    {
        await _home.DisposeAsync();
        await _dr.DisposeAsync();
        _proxy.Dispose();
        _temp.Dispose();
    }

    [Theory]
    [InlineData(7)]
    public async Task RandomCycles_OfSyncPromoteReverseDemoteAndKill9_KeepEveryReplicaExactlyOneOfItsSourcesSnapshots(int seed)
    {
        var random = new Random(seed);
        var log = new List<string>();
        var known = new Dictionary<string, string>(StringComparer.Ordinal); // replicated snapshot -> its hash at the sending site
        try
        {
            using (var home = _home.Client())
            {
                await home.CreateVolumeAsync(new CreateVolumeRequest("vol", Size));
                await home.CreateExportAsync(new CreateExportRequest("vol", "vol", "nbd"));
                await home.CreateReplicaAsync(new CreateReplicaRequest("vol", "dr", CompressionLevel: 0));
            }

            await WriteAsync(_home, "vol", 0, log);
            await SyncAsync(_home, known, cut: false, log);
            var phase = Phase.Forward;
            var cycles = 0;
            var phaseStart = log.Count;
            var inPhase = 0;
            for (var step = 0; cycles < (Long ? 5 : 1); step++)
            {
                Assert.True(step < 400, "the model did not finish its cycles");

                // Each visit of a phase lasts at least two steps and, before it may end, includes what
                // it owes (so even the short default run kills both sides, breaks a sync and makes
                // home write after the promotion); otherwise every step is drawn at random.
                var mayLeave = inPhase >= 2;
                var owed = mayLeave ? Owed[phase].FirstOrDefault(o => !log.Skip(phaseStart).Any(l => l.StartsWith(o, StringComparison.Ordinal))) : null;
                var roll = random.Next(16);
                var before = phase;
                if (owed == "kill -9 home" || (owed is null && roll == 0))
                {
                    _home = await KillAndRestartAsync(_home, "home", _homePort, log);
                }
                else if (owed == "kill -9 dr" || (owed is null && roll == 1))
                {
                    _dr = await KillAndRestartAsync(_dr, "dr", _drPort, log);
                }
                else if (owed == "sync over a breaking link")
                {
                    await SyncAsync(_home, known, cut: true, log);
                }
                else if (owed == "write home")
                {
                    await WriteAsync(_home, "vol", random.Next(16) << 20, log);
                }
                else
                {
                    switch (phase)
                    {
                        case Phase.Forward:
                            phase = await ForwardStepAsync(random, known, log, step, mayLeave);
                            break;
                        case Phase.Promoted:
                            phase = await PromotedStepAsync(random, known, log, mayLeave);
                            break;
                        default:
                            phase = await ReversedStepAsync(random, known, log, mayLeave);
                            cycles += phase == Phase.Forward ? 1 : 0;
                            break;
                    }
                }

                await CheckAsync(phase, known, log);
                (inPhase, phaseStart) = phase == before ? (inPhase + 1, phaseStart) : (0, log.Count);
            }

            // Home is the primary again: replication in the original direction goes on from the shared snapshot.
            await WriteAsync(_home, "vol", random.Next(16) << 20, log);
            await SyncAsync(_home, known, cut: false, log);
            await CheckAsync(Phase.Forward, known, log);
            foreach (var operation in new[] { "kill -9 home", "kill -9 dr", "promote at dr", "reverse", "sync at dr", "sync over a breaking link" })
            {
                Assert.Contains(log, l => l.StartsWith(operation, StringComparison.Ordinal));
            }

            Assert.Contains(log, l => l.StartsWith("promote at home", StringComparison.Ordinal) || l.StartsWith("demote at dr", StringComparison.Ordinal));
            using var h = _home.Client();
            using var d = _dr.Client();
            Assert.True((await h.VerifyAsync()).Clean);
            Assert.True((await d.VerifyAsync()).Clean);
        }
        finally
        {
            // The steps, to repeat a failure by hand.
            output.WriteLine(string.Join(Environment.NewLine, log));
        }
    }

    /// <summary>Home is the primary, DR its replica.</summary>
    private async Task<Phase> ForwardStepAsync(Random random, Dictionary<string, string> known, List<string> log, int step, bool mayLeave)
    {
        using var dr = _dr.Client();
        switch (random.Next(mayLeave ? 7 : 6))
        {
            case 0:
            case 1:
                await WriteAsync(_home, "vol", random.Next(16) << 20, log);
                return Phase.Forward;
            case 2:
                log.Add("snapshot at dr");
                await dr.CreateSnapshotAsync("vol", $"by-hand-{step}");
                return Phase.Forward;
            case 3:
                log.Add("rw export at dr (refused)");
                Assert.Equal("read-only", (await Assert.ThrowsAsync<TidemarkApiException>(() => dr.CreateExportAsync(new CreateExportRequest("vol", $"rw-{step}", "nbd")))).Code);
                return Phase.Forward;
            case 4:
            case 5:
                await SyncAsync(_home, known, cut: random.Next(3) == 0, log);
                return Phase.Forward;
            default:
                // The disaster: the DR site promotes its newest replicated snapshot and works.
                var promoted = await dr.PromoteReplicaAsync("vol");
                log.Add($"promote at dr ({promoted.Snapshot.Name})");
                Assert.True(known.ContainsKey(promoted.Snapshot.Name), $"promoted to {promoted.Snapshot.Name}, which home never sent; {Steps(log)}");
                Assert.Equal(known[promoted.Snapshot.Name], await HashLiveAsync(_dr, dr));
                await dr.CreateExportAsync(new CreateExportRequest("vol", "vol-dr", "nbd"));
                return Phase.Promoted;
        }
    }

    /// <summary>DR is a promoted primary; home may still write (split brain).</summary>
    private async Task<Phase> PromotedStepAsync(Random random, Dictionary<string, string> known, List<string> log, bool mayLeave)
    {
        switch (random.Next(mayLeave ? 4 : 2))
        {
            case 0:
                await WriteAsync(_dr, "vol-dr", random.Next(16) << 20, log);
                return Phase.Promoted;
            case 1:
                await WriteAsync(_home, "vol", random.Next(16) << 20, log);
                return Phase.Promoted;
            default:
                await ReverseAsync(known, log);
                return Phase.Reversed;
        }
    }

    /// <summary>DR sends the volume back home; home's copy is a replica of DR's.</summary>
    private async Task<Phase> ReversedStepAsync(Random random, Dictionary<string, string> known, List<string> log, bool mayLeave)
    {
        using var home = _home.Client();
        switch (random.Next(mayLeave ? 5 : 3))
        {
            case 0:
                await WriteAsync(_dr, "vol-dr", random.Next(16) << 20, log);
                return Phase.Reversed;
            case 1:
                await SyncAsync(_dr, known, cut: false, log);
                return Phase.Reversed;
            case 2:
                log.Add("rw export at home (refused)");
                Assert.Equal("read-only", (await Assert.ThrowsAsync<TidemarkApiException>(() => home.CreateExportAsync(new CreateExportRequest("vol", "rw-home", "nbd")))).Code);
                return Phase.Reversed;
            default:
                // The planned switch back: the application stops at DR, a final sync, promote at home.
                using (var dr = _dr.Client())
                {
                    await dr.DeleteExportAsync("vol-dr");
                }

                await SyncAsync(_dr, known, cut: false, log);
                var cutOff = random.Next(2) == 0;
                _proxy.CutAfterBytes = 0; // not even a TLS handshake gets through
                _proxy.CutEveryConnection = cutOff;
                var promoted = await home.PromoteReplicaAsync("vol");
                _proxy.CutEveryConnection = false;
                _proxy.CutAfterBytes = 256 << 10;
                log.Add($"promote at home ({promoted.Snapshot.Name}){(cutOff ? " with dr cut off" : "")}");
                Assert.True(known.ContainsKey(promoted.Snapshot.Name), $"home promoted to {promoted.Snapshot.Name}, which dr never sent; {Steps(log)}");
                Assert.Equal(known[promoted.Snapshot.Name], await HashLiveAsync(_home, home));
                if (cutOff)
                {
                    Assert.Contains("replica demote", promoted.Note, StringComparison.Ordinal);
                    using var dr = _dr.Client();
                    var demoted = await dr.DemoteReplicaAsync("vol");
                    log.Add("demote at dr");
                    Assert.Null(demoted.KeptState); // nothing was written there after the final sync
                }
                else
                {
                    Assert.Contains("dr made vol a replica again", promoted.Note, StringComparison.Ordinal);
                }

                await home.CreateExportAsync(new CreateExportRequest("vol", "vol", "nbd"));
                return Phase.Forward;
        }
    }

    /// <summary>
    /// Fail-back: refused as split brain exactly when home's image is no longer the snapshot DR was
    /// promoted from; then with --discard-writes-at home, the kept snapshot holds home's image and
    /// both the output and home's event log name it.
    /// </summary>
    private async Task ReverseAsync(Dictionary<string, string> known, List<string> log)
    {
        using var home = _home.Client();
        using var dr = _dr.Client();
        if ((await home.ListExportsAsync()).Any(e => e.Name == "vol"))
        {
            await home.DeleteExportAsync("vol");
        }

        var common = Assert.Single(await dr.ListIncomingAsync()).LastSnapshot!;
        var homeImage = await HashLiveAsync(_home, home);
        var split = homeImage != known[common];
        ReplicaDto back;
        if (split)
        {
            var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => dr.ReverseReplicaAsync("vol"));
            Assert.Contains("split brain", refused.Message, StringComparison.Ordinal);
            back = await dr.ReverseReplicaAsync("vol", discardWritesAt: "home");
            var kept = (await home.ListSnapshotsAsync("vol")).Single(s => back.DiscardedWrites!.Contains(s.Address, StringComparison.Ordinal));
            Assert.Equal(homeImage, await Pairing.HashSnapshotAsync(_home, kept.Address, _temp.Path));
            Assert.Contains(await home.ListEventsAsync(kind: "replica.split-brain"), e => e.Outcome == "ok" && e.Message.Contains(kept.Address, StringComparison.Ordinal));
        }
        else
        {
            back = await dr.ReverseReplicaAsync("vol");
            Assert.Null(back.DiscardedWrites);
        }

        log.Add($"reverse{(split ? " (split brain, home's writes discarded and kept)" : "")} ({back.LastSnapshot})");
        known[back.LastSnapshot!] = await Pairing.HashSnapshotAsync(_dr, $"vol@{back.LastSnapshot}", _temp.Path);
    }

    /// <summary>After every step: the receiving site's newest replicated snapshot is one its partner sent, byte for byte.</summary>
    private async Task CheckAsync(Phase phase, Dictionary<string, string> known, List<string> log)
    {
        var receiver = phase switch
        {
            Phase.Forward => _dr,
            Phase.Reversed => _home,
            _ => null,
        };
        if (receiver is null)
        {
            return;
        }

        using var client = receiver.Client();
        var incoming = Assert.Single(await client.ListIncomingAsync(), i => i.Volume == "vol");
        Assert.False(incoming.Promoted);
        Assert.True(known.ContainsKey(incoming.LastSnapshot!), $"the replica's newest snapshot {incoming.LastSnapshot} was never sent; {Steps(log)}");
        Assert.Equal(known[incoming.LastSnapshot!], await Pairing.HashSnapshotAsync(receiver, $"vol@{incoming.LastSnapshot}", _temp.Path));
    }

    private async Task SyncAsync(ServerProcess sender, Dictionary<string, string> known, bool cut, List<string> log)
    {
        var name = sender == _home ? "" : " at dr";
        log.Add(cut ? $"sync over a breaking link{name}" : $"sync{name}");
        using var client = sender.Client();
        _proxy.CutEveryConnection = cut;
        try
        {
            var done = await client.SyncReplicaAsync("vol");
            known[done.LastSnapshot!] = await Pairing.HashSnapshotAsync(sender, $"vol@{done.LastSnapshot}", _temp.Path);
        }
        catch (TidemarkApiException) when (cut)
        {
            // The replica keeps its last complete snapshot: checked after the step.
        }
        finally
        {
            _proxy.CutEveryConnection = false;
        }
    }

    private async Task WriteAsync(ServerProcess server, string export, long offset, List<string> log)
    {
        log.Add($"write {(server == _home ? "home" : "dr")} {offset}");
        using var client = server.Client();
        var url = (await client.ListExportsAsync()).Single(e => e.Name == export).Url!;
        var file = _temp.Combine($"w-{Guid.NewGuid():N}.bin");
        await File.WriteAllBytesAsync(file, System.Security.Cryptography.RandomNumberGenerator.GetBytes(1 << 20));

        // Flushed: a kill -9 in a later step must not take it back.
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {file} {offset} {1 << 20}", "-c", "flush", url)).AssertSuccess();
        File.Delete(file);
    }

    private async Task<ServerProcess> KillAndRestartAsync(ServerProcess server, string name, int port, List<string> log)
    {
        log.Add($"kill -9 {name}");
        await server.KillAsync();
        await server.DisposeAsync();
        return await StartAsync(name, port);
    }

    private Task<ServerProcess> StartAsync(string name, int port) =>
        ServerProcess.StartAsync(_temp.Combine(name), "--replication", $"127.0.0.1:{port}", "--replication-retry-delay", "100ms");

    private async Task<string> HashLiveAsync(ServerProcess server, TidemarkClient client)
    {
        var name = $"hash-{Guid.NewGuid():N}"[..20];
        await client.CreateSnapshotAsync("vol", name);
        try
        {
            return await Pairing.HashSnapshotAsync(server, $"vol@{name}", _temp.Path);
        }
        finally
        {
            await client.DeleteSnapshotAsync($"vol@{name}");
        }
    }

    private static string Steps(List<string> log) => $"steps: {string.Join(", ", log)}";
}
