using System.Text;
using Tidemark.Engine.Control;
using Tidemark.Server.Agents;
using Tidemark.Server.Api;
using Tidemark.Server.Capacity;
using Tidemark.Server.Jobs;
using Tidemark.Server.Policies;
using Tidemark.Replication;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Tests;

/// <summary>
/// The server's control records in the pool (ADR 0011) as today's code writes them: each sample must
/// decode to the same values forever after, and encoding those values today must give the same
/// bytes. On a failure keep the old layout readable (bump the kind's version with an upgrade),
/// never edit a sample to make it pass.
/// </summary>
public sealed class ControlRecordGoldenTests
{
    private static readonly DateTimeOffset At = new(2026, 12, 6, 5, 0, 0, TimeSpan.Zero);

    [Fact]
    public void ExportRecord_Golden() =>
        Check(
            ExportRegistry.Kind,
            """
            7532F58E01000100 {"name":"secure","protocol":"iscsi","target":"db","readOnly":false,"luns":["db","db@monday"],"iqn":"iqn.2026-11.dev.tidemark:secure","allowedInitiators":["iqn.2026-11.dev.client:a"],"chap":{"user":"alice","secret":"alice-secret-12"},"mutualChap":{"user":"target","secret":"target-secret-12"},"tlsRequired":true}
            """,
            new ExportRegistry.ExportRecord("secure", "iscsi", "db", false)
            {
                Luns = ["db", "db@monday"],
                Iqn = "iqn.2026-11.dev.tidemark:secure",
                AllowedInitiators = ["iqn.2026-11.dev.client:a"],
                Chap = new("alice", "alice-secret-12"),
                MutualChap = new("target", "target-secret-12"),
                TlsRequired = true,
            },
            r => (r.Name, r.Protocol, r.Target, r.ReadOnly, string.Join(',', r.Luns!), r.Iqn, string.Join(',', r.AllowedInitiators!), r.Chap, r.MutualChap, r.TlsRequired));

    [Fact]
    public void PolicyRecord_Golden() =>
        Check(
            PolicyRecord.Kind,
            """
            C1195DC501000100 {"definition":{"name":"hourly","volume":"db","group":null,"schedule":"hourly","timeZone":"Europe/Berlin","changedBytes":1073741824,"keepLast":3,"keepHourly":24,"keepDaily":7,"keepWeekly":4,"keepMonthly":12,"enabled":false},"nextRun":"2026-12-06T06:00:00+00:00","lastSnapshotAt":"2026-12-06T05:00:00+00:00","snapshots":["hourly-20261206-050000"],"lastError":"no space","activity":[{"time":"2026-12-06T05:00:00+00:00","action":"snapshot","snapshot":"hourly-20261206-050000","message":"scheduled"}]}
            """,
            new PolicyRecord(
                new PolicyDefinitionRecord("hourly", "db", null, "hourly", "Europe/Berlin", 1L << 30, 3, 24, 7, 4, 12, false),
                At.AddHours(1),
                At,
                ["hourly-20261206-050000"],
                "no space",
                [new PolicyActivityRecord(At, "snapshot", "hourly-20261206-050000", "scheduled")]),
            r => (r.Definition, r.NextRun, r.LastSnapshotAt, string.Join(',', r.Snapshots!), r.LastError, r.Activity!.Single()));

    [Fact]
    public void AutoGrowRecord_Golden() =>
        Check(AutoGrowRecord.Kind, """
            07EF30C801000100 {"thresholdPercent":80,"stepBytes":1073741824,"maxBytes":10737418240}
            """, new AutoGrowRecord(80, 1L << 30, 10L << 30), r => r);

    [Fact]
    public void TokenRecord_Golden() =>
        Check(
            TokenStore.Kind,
            """
            0066738401000100 {"name":"alice","role":"operator","sha256":"2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6","created":"2026-12-06T05:00:00+00:00"}
            """,
            new TokenRecord("alice", "operator", "2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6", At),
            r => r);

    [Fact]
    public void JobRecord_Golden() =>
        Check(
            JobManager.Kind,
            """
            2E865BE101000100 {"id":"0a1b2c3d4e5f","kind":"pool.verify","subject":null,"actor":"alice","cancellable":true,"state":"succeeded","done":10,"total":10,"unit":"pages","startedAt":"2026-12-06T05:00:00+00:00","finishedAt":"2026-12-06T05:00:03+00:00","error":null,"errorCode":null,"result":{"clean":true}}
            """,
            new JobRecord("0a1b2c3d4e5f", "pool.verify", null, "alice", true, "succeeded", 10, 10, "pages", At, At.AddSeconds(3), null, null, System.Text.Json.JsonDocument.Parse("""{"clean":true}""").RootElement),
            r => (r.Id, r.Kind, r.Subject, r.Actor, r.Cancellable, r.State, r.Done, r.Total, r.Unit, r.StartedAt, r.FinishedAt, r.Error, r.ErrorCode, r.Result!.Value.GetRawText()));

    [Fact]
    public void PartnerRecord_Golden() =>
        Check(
            PartnerRegistry.Kind,
            """
            87E39CFC01000100 {"name":"dr","address":"10.0.0.2:7443","fingerprint":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff","addedAt":"2026-12-06T05:00:00+00:00"}
            """,
            new PartnerRecord("dr", "10.0.0.2:7443", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", At),
            r => r);

    // Session 19's replica record: no agents' fields (ADR 0015 added them as optional ones).
    private const string ReplicaWrittenBeforeAgents = """
        5C10199E01000100 {"volume":"mail","partner":"dr","remoteVolume":"mail-copy","every":"5m","lastAttemptAt":"2026-12-06T05:00:00+00:00","lastSnapshot":"repl-20261206-050000-000","lastSnapshotCreatedAt":"2026-12-06T05:00:00+00:00","lastSyncAt":"2026-12-06T05:00:02+00:00","bytesSent":3145728,"lastBytesSent":1048576,"lastRangeBytes":2097152,"lastDurationSeconds":1.5,"retries":2,"lastError":"link down","afterPolicySnapshots":true,"isGroup":false,"bandwidth":"20M","reverse":true,"discardWritesAtPartner":true,"discardedWrites":"pre-rollback-1","suspended":"failing back","seed":true,"pendingSnapshot":"repl-20261206-051000-000","standbyExports":[{"protocol":"iscsi","name":"mail-dr","iqn":"iqn.2026-11.dev.tidemark:mail","allowedInitiators":["iqn.2026-11.dev.client:a"]}],"compressionLevel":7,"lastScannedBytes":8388608}
        """;

    [Fact]
    public void ReplicaRecord_Golden() =>
        Check(
            ReplicaManager.Kind,
            ReplicaWrittenBeforeAgents,
            new ReplicaState
            {
                Volume = "mail",
                Partner = "dr",
                RemoteVolume = "mail-copy",
                Every = "5m",
                LastAttemptAt = At,
                LastSnapshot = "repl-20261206-050000-000",
                LastSnapshotCreatedAt = At,
                LastSyncAt = At.AddSeconds(2),
                BytesSent = 3 << 20,
                LastBytesSent = 1 << 20,
                LastRangeBytes = 2 << 20,
                LastDurationSeconds = 1.5,
                Retries = 2,
                LastError = "link down",
                AfterPolicySnapshots = true,
                IsGroup = false,
                Bandwidth = "20M",
                Reverse = true,
                DiscardWritesAtPartner = true,
                DiscardedWrites = "pre-rollback-1",
                Suspended = "failing back",
                Seed = true,
                PendingSnapshot = "repl-20261206-051000-000",
                StandbyExports = [new("iscsi", "mail-dr", "iqn.2026-11.dev.tidemark:mail", ["iqn.2026-11.dev.client:a"])],
                CompressionLevel = 7,
                LastScannedBytes = 8 << 20,
            },
            r => System.Text.Json.JsonSerializer.Serialize(r, ServerSettings.FileJson));

    /// <summary>A replica whose cycles go through agents (ADR 0015): optional fields, no version bump; the sample above has none of them.</summary>
    [Fact]
    public void ReplicaRecordWithAgents_Golden() =>
        Check(
            ReplicaManager.Kind,
            """
            BF17C54701000100 {"volume":"pg","partner":"dr","remoteVolume":"pg","every":"15m","lastAttemptAt":null,"lastSnapshot":"repl-20261206-050000-000","lastSnapshotCreatedAt":"2026-12-06T05:00:00+00:00","lastSyncAt":"2026-12-06T05:00:02+00:00","bytesSent":0,"lastBytesSent":0,"lastRangeBytes":0,"lastDurationSeconds":null,"retries":0,"lastError":"sync of 2026-12-06 05:15:00Z skipped (fallback skip): not every host could quiesce (db2: did not answer); the next sync tries again","afterPolicySnapshots":false,"isGroup":true,"bandwidth":null,"reverse":false,"discardWritesAtPartner":false,"discardedWrites":null,"suspended":null,"seed":false,"pendingSnapshot":"repl-20261206-053000-000","standbyExports":null,"compressionLevel":3,"lastScannedBytes":0,"hosts":["db1","db2"],"fallback":"skip","lastConsistency":"application (db1: postgresql: cluster main, /srv/pg (ext4))","pendingConsistency":"crash (quiesce failed, taken crash-consistent: db2: did not answer)"}
            """,
            new ReplicaState
            {
                Volume = "pg",
                Partner = "dr",
                RemoteVolume = "pg",
                Every = "15m",
                LastSnapshot = "repl-20261206-050000-000",
                LastSnapshotCreatedAt = At,
                LastSyncAt = At.AddSeconds(2),
                LastError = "sync of 2026-12-06 05:15:00Z skipped (fallback skip): not every host could quiesce (db2: did not answer); the next sync tries again",
                IsGroup = true,
                PendingSnapshot = "repl-20261206-053000-000",
                Hosts = ["db1", "db2"],
                Fallback = "skip",
                LastConsistency = "application (db1: postgresql: cluster main, /srv/pg (ext4))",
                PendingConsistency = "crash (quiesce failed, taken crash-consistent: db2: did not answer)",
            },
            r => System.Text.Json.JsonSerializer.Serialize(r, ServerSettings.FileJson));

    [Fact]
    public void ReplicaRecord_WrittenBeforeAgents_ReadsAsNoAgents()
    {
        var old = ReplicaManager.Kind.Decode(
            [.. Convert.FromHexString(ReplicaWrittenBeforeAgents[..16]), .. Encoding.UTF8.GetBytes(ReplicaWrittenBeforeAgents[17..])],
            "a golden sample");

        Assert.Equal(("mail", "repl-20261206-050000-000"), (old.Volume, old.LastSnapshot));
        Assert.Null(old.Hosts);
        Assert.Null(old.Fallback);
        Assert.Null(old.LastConsistency);
        Assert.Null(old.PendingConsistency);
    }

    [Fact]
    public void IncomingRecord_Golden() =>
        Check(
            ReplicaReceiver.IncomingKind,
            """
            0BDD13FE01000100 {"volume":"mail","partner":"home","sourceVolume":"mail","lastSnapshot":"repl-20261206-050000-000","lastSnapshotCreatedAt":"2026-12-06T05:00:00+00:00","lastReceivedAt":"2026-12-06T05:00:01+00:00","group":"g","keepLast":48,"lastSnapshotId":"6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10","sequence":7,"generation":2}
            """,
            new IncomingRecord("mail", "home", "mail", "repl-20261206-050000-000", At, At.AddSeconds(1), "g", 48, Guid.Parse("6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10"), 7, 2),
            r => r);

    [Fact]
    public void ReceivingRecord_Golden() =>
        Check(ReplicaReceiver.ReceivingKind, """
            795EF34901000100 {"snapshotId":"6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10","appliedOffset":16777216}
            """, new ReceivingRecord(Guid.Parse("6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10"), 16 << 20), r => r);

    [Fact]
    public void StandbyRecord_Golden() =>
        Check(
            ReplicaReceiver.StandbyKind,
            """
            8F0D497501000100 {"exports":[{"target":"mail","name":"mail-dr","protocol":"iscsi","readOnly":true,"additionalTargets":["archive"],"iqn":"iqn.2026-11.dev.tidemark:mail","allowedInitiators":["iqn.2026-11.dev.client:a"],"chapUser":"alice","mutualChapUser":"target","tlsRequired":true}]}
            """,
            new StandbyRecord([new StandbyExportRecord("mail", "mail-dr", "iscsi", true, ["archive"], "iqn.2026-11.dev.tidemark:mail", ["iqn.2026-11.dev.client:a"], "alice", "target", true)]),
            r => System.Text.Json.JsonSerializer.Serialize(r, ServerSettings.FileJson));

    [Fact]
    public void PromotedRecord_Golden() =>
        Check(ReplicaReceiver.PromotedKind, """
            C921233A01000100 {"promotedAt":"2026-12-06T05:00:00+00:00"}
            """, new PromotedRecord(At), r => r);

    [Fact]
    public void PolicyRecordWithAgents_Golden() =>
        Check(
            PolicyRecord.Kind,
            """
            85BFD92D01000100 {"definition":{"name":"app","volume":null,"group":"db","schedule":"every 15m","timeZone":null,"changedBytes":null,"keepLast":8,"keepHourly":null,"keepDaily":null,"keepWeekly":null,"keepMonthly":null,"enabled":true,"hosts":["db1","db2"],"fallback":"skip"},"nextRun":null,"lastSnapshotAt":null,"snapshots":[],"lastError":null,"activity":[]}
            """,
            new PolicyRecord(new PolicyDefinitionRecord("app", null, "db", "every 15m", null, null, 8, null, null, null, null, true, ["db1", "db2"], "skip"), null, null, [], null, []),
            r => (r.Definition.Name, r.Definition.Group, string.Join(',', r.Definition.Hosts!), r.Definition.Fallback));

    [Fact]
    public void HostRecord_Golden() =>
        Check(
            HostRecord.Kind,
            """
            DFD4262301000100 {"name":"db1","address":"10.0.0.5:8420","fingerprint":"2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6","addedAt":"2026-12-06T05:00:00+00:00"}
            """,
            new HostRecord("db1", "10.0.0.5:8420", "2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6", At),
            r => r);

    [Fact]
    public void ConsistencyRecord_Golden() =>
        Check(
            ConsistencyRecord.Kind,
            """
            99CA088501000100 {"level":"filesystem","detail":"db1: /srv/data (ext4)","hosts":["db1"],"pausedSeconds":0.125,"at":"2026-12-06T05:00:00+00:00"}
            """,
            new ConsistencyRecord("filesystem", "db1: /srv/data (ext4)", ["db1"], 0.125, At),
            r => (r.Level, r.Detail, string.Join(',', r.Hosts), r.PausedSeconds, r.At));

    [Fact]
    public void VerificationRecord_Golden() =>
        Check(
            VerificationRecord.Kind,
            """
            8ACD1A4401000100 {"verdict":"failed","reason":"e2fsck -fn found problems","checks":["mounted read-only"],"seconds":4.5,"host":"db1","at":"2026-12-06T05:00:00+00:00"}
            """,
            new VerificationRecord("failed", "e2fsck -fn found problems", ["mounted read-only"], 4.5, "db1", At),
            r => (r.Verdict, r.Reason, string.Join(',', r.Checks), r.Seconds, r.Host, r.At));

    [Fact]
    public void RecoveryViewRecord_Golden() =>
        Check(
            RecoveryViewRecord.Kind,
            """
            B3CBE80001000100 {"origin":"mail@monday","purpose":"mail recovery job 7f3a by alice","at":"2026-12-06T05:00:00+00:00"}
            """,
            new RecoveryViewRecord("mail@monday", "mail recovery job 7f3a by alice", At),
            r => (r.Origin, r.Purpose, r.At));

    /// <summary>The sample is the 8-byte envelope in hex, a space, then the record's JSON.</summary>
    private static void Check<T, TValues>(ControlKind<T> kind, string golden, T record, Func<T, TValues> values)
        where T : class
    {
        var encoded = kind.Encode(record);
        var actual = Convert.ToHexString(encoded, 0, 8) + " " + Encoding.UTF8.GetString(encoded, 8, encoded.Length - 8);
        Assert.True(golden == actual, "actual: " + actual);

        byte[] goldenBytes = [.. Convert.FromHexString(golden[..16]), .. Encoding.UTF8.GetBytes(golden[17..])];
        Assert.Equal(values(record), values(kind.Decode(goldenBytes, "a golden sample")));
    }
}
