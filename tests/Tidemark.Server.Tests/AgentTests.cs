using System.Net;
using System.Net.Http.Json;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Tidemark.Agent;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Hosts and agents (ADR 0015) on a real server and a real agent listener, without root: pairing,
/// refusals, and what a snapshot does when an agent cannot quiesce (down, unpaired, nothing to
/// quiesce). Freezing a real file system is in the interop tests (Tidemark.Interop.Tests, AgentFreezeTests).
/// </summary>
public sealed class AgentTests : ServerTest
{
    [Fact]
    public async Task ConsistentSnapshot_AgentDown_SkipTakesNothingAndCrashFallbackIsLabelled()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        await client.AddHostAsync(new AddHostRequest("db1", $"127.0.0.1:{FreePort.FindStable()}", new string('a', 64)));

        var skipped = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("db", new CreateSnapshotRequest("manual", ["db1"])));
        var afterSkip = await client.ListSnapshotsAsync("db");
        var crash = await client.CreateSnapshotAsync("db", new CreateSnapshotRequest("fallback", ["db1"], "crash"));
        var plain = await client.CreateSnapshotAsync("db", "plain");
        await client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["db1"]));
        var policy = await client.RunPolicyAsync("app");
        var listed = await client.ListSnapshotsAsync("db");
        var events = await client.ListEventsAsync();

        Assert.Equal(HttpStatusCode.BadGateway, skipped.Status);
        Assert.Contains("skipped", skipped.Message, StringComparison.Ordinal);
        Assert.Contains("db1", skipped.Message, StringComparison.Ordinal);
        Assert.Empty(afterSkip);
        Assert.StartsWith("crash (quiesce failed", crash.Consistency, StringComparison.Ordinal);
        Assert.Equal("crash", plain.Consistency);
        Assert.Equal(crash.Consistency, listed.Single(s => s.Name == "fallback").Consistency);
        var policySnapshot = listed.Single(s => s.Name.StartsWith("app-", StringComparison.Ordinal));
        Assert.StartsWith("crash (quiesce failed", policySnapshot.Consistency, StringComparison.Ordinal);
        Assert.Contains("consistency: crash", policy.Activity[^1].Message, StringComparison.Ordinal);
        Assert.Contains(events, e => e.Kind == "snapshot.skip" && e.Subject == "db" && e.Outcome == "failed");
        Assert.Equal(3, events.Count(e => e.Kind == "agent.quiesce" && e.Subject == "db1" && e.Outcome == "failed"));
        Assert.Contains(events, e => e.Kind == "snapshot.consistency" && e.Subject == policySnapshot.Address && e.Actor == "policy:app" && e.Outcome == "fallback");
    }

    [Fact]
    public async Task Verify_AgentDownOrNothingDeclared_NotChecked_ViewAndExportDeleted_RecordedAndCounted()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await using var agent = await StartAgentAsync(identity.Fingerprint, new AgentMountEntry("/nonexistent/tidemark-mount", "other"));
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await client.AddHostAsync(new AddHostRequest("down", $"127.0.0.1:{FreePort.FindStable()}", new string('a', 64)));
        await client.CreateSnapshotAsync("db", "s");

        var nothing = await client.VerifySnapshotAsync("db@s", new VerifySnapshotRequest("db1"));
        var down = await client.VerifySnapshotAsync("db@s", new VerifySnapshotRequest("down"));
        var noHost = await Assert.ThrowsAsync<TidemarkApiException>(() => client.VerifySnapshotAsync("db@s", new VerifySnapshotRequest("")));
        var unknownHost = await Assert.ThrowsAsync<TidemarkApiException>(() => client.VerifySnapshotAsync("db@s", new VerifySnapshotRequest("nobody")));
        await client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["down"]));
        var policy = await client.RunPolicyAsync("app");
        var listed = await client.ListSnapshotsAsync("db");
        var volumes = await client.ListVolumesAsync();
        var exports = await client.ListExportsAsync();
        var events = await client.ListEventsAsync();
        using var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);
        var metrics = PrometheusExposition.Parse(await http.GetStringAsync("metrics"));
        var cli = await CliProcess.RunAsync("snapshot", "list", "db", "--data", Server.DataDirectory);
        var cliVerify = await CliProcess.RunAsync("snapshot", "verify", "db@s", "--data", Server.DataDirectory);

        Assert.Equal(VerifyResultDto.NotChecked, nothing.Verification?.Verdict);
        Assert.Contains("nothing on host db1 is declared on volume db", nothing.Verification!.Reason, StringComparison.Ordinal);
        Assert.Equal(VerifyResultDto.NotChecked, down.Verification?.Verdict);
        Assert.Contains("did not answer", down.Verification!.Reason, StringComparison.Ordinal);
        Assert.Equal("down", down.Verification.Host);
        Assert.Equal(HttpStatusCode.BadRequest, noHost.Status);
        Assert.Equal(HttpStatusCode.NotFound, unknownHost.Status);
        Assert.Equal((down.Verification.Summary, down.Verification.At), (listed.Single(s => s.Name == "s").Verification?.Summary, listed.Single(s => s.Name == "s").Verification?.At));
        var policySnapshot = listed.Single(s => s.Name.StartsWith("app-", StringComparison.Ordinal));
        Assert.Equal(VerifyResultDto.NotChecked, policySnapshot.Verification?.Verdict); // on by default for a policy with hosts
        Assert.Contains("verification: db: not-checked", policy.Activity[^1].Message, StringComparison.Ordinal);
        Assert.DoesNotContain(volumes, v => v.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.DoesNotContain(exports, e => e.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.Equal(3, events.Count(e => e.Kind == "snapshot.verify" && e.Outcome == "skipped"));
        Assert.Equal(3, metrics["tidemark_snapshot_verifications_total{verdict=\"not-checked\"}"]);
        Assert.Equal(0, cli.ExitCode);
        Assert.Contains("VERIFIED", cli.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("not-checked in", cli.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(2, cliVerify.ExitCode); // --host is required
    }

    [Fact]
    public async Task GroupVerify_OneRequestForTheCut_VerdictOnEveryMember_ViewsDeleted_PolicyOnGroupToo()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await using var agent = await StartAgentAsync(identity.Fingerprint, new AgentMountEntry("/nonexistent/tidemark-mount", "other"));
        await client.CreateVolumeAsync(new CreateVolumeRequest("data", 64 << 20));
        await client.CreateVolumeAsync(new CreateVolumeRequest("wal", 64 << 20));
        await client.CreateGroupAsync(new CreateGroupRequest("pg", ["data", "wal"]));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await client.SnapshotGroupAsync("pg", "g1");

        var verified = await client.VerifyGroupSnapshotAsync("pg", "g1", new VerifySnapshotRequest("db1"));
        var noHost = await Assert.ThrowsAsync<TidemarkApiException>(() => client.VerifyGroupSnapshotAsync("pg", "g1", new VerifySnapshotRequest("")));
        var noSnapshot = await Assert.ThrowsAsync<TidemarkApiException>(() => client.VerifyGroupSnapshotAsync("pg", "nope", new VerifySnapshotRequest("db1")));
        await client.CreatePolicyAsync(new PolicyRequest("app", Group: "pg", Schedule: "every 1h", Hosts: ["db1"], Fallback: "crash"));
        var policy = await client.RunPolicyAsync("app");
        var wal = await client.ListSnapshotsAsync("wal");
        var volumes = await client.ListVolumesAsync();
        var cli = await CliProcess.RunAsync("group", "verify", "pg", "g1", "--host", "db1", "--data", Server.DataDirectory);

        // The agent was asked once, for both members: its answer names both volumes.
        Assert.Equal(["data@g1", "wal@g1"], verified.Select(s => s.Address));
        Assert.All(verified, s => Assert.Equal(VerifyResultDto.NotChecked, s.Verification?.Verdict));
        Assert.Contains("nothing on host db1 is declared on volume data, wal", verified[0].Verification!.Reason, StringComparison.Ordinal);
        Assert.Equal(verified[1].Verification!.Summary, wal.Single(s => s.Name == "g1").Verification?.Summary);
        Assert.Equal(HttpStatusCode.BadRequest, noHost.Status);
        Assert.Equal(HttpStatusCode.NotFound, noSnapshot.Status);
        Assert.Equal(VerifyResultDto.NotChecked, wal.Single(s => s.Name.StartsWith("app-", StringComparison.Ordinal)).Verification?.Verdict);
        Assert.Contains("verification: data, wal: not-checked", policy.Activity[^1].Message, StringComparison.Ordinal);
        Assert.DoesNotContain(volumes, v => v.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.Equal(0, cli.ExitCode);
        Assert.Contains("wal@g1", cli.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task PolicyVerify_FirstHostDown_AsksTheNextHost()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await using var agent = await StartAgentAsync(identity.Fingerprint, new AgentMountEntry("/nonexistent/tidemark-mount", "other"));
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        await client.AddHostAsync(new AddHostRequest("down", $"127.0.0.1:{FreePort.FindStable()}", new string('a', 64)));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["down", "db1"], Fallback: "crash"));

        var policy = await client.RunPolicyAsync("app");
        var verification = (await client.ListSnapshotsAsync("db")).Single().Verification;

        // Neither can check (one is down, the other declares nothing on db): both were asked, in order.
        Assert.Equal(VerifyResultDto.NotChecked, verification?.Verdict);
        Assert.Equal("db1", verification!.Host);
        Assert.StartsWith("no host checked it: down: ", verification.Reason, StringComparison.Ordinal);
        Assert.Contains("; db1: nothing on host db1 is declared on volume db", verification.Reason, StringComparison.Ordinal);
        Assert.Contains("verification: db: not-checked", policy.Activity[^1].Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Restart_VerificationViewLeftByKilledServer_DeletedWithItsExportAndAnEvent()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
            await client.CreateSnapshotAsync("db", "s");
            await client.CreateViewAsync("db@s", "verify-db-20261206-120000-0123456789ab");
            await client.CreateExportAsync(new CreateExportRequest(Target: "verify-db-20261206-120000-0123456789ab", Name: "verify-db-20261206-120000-0123456789ab"));
            await client.CreateViewAsync("db@s", "verify-mine"); // an operator's view of that name is not a leftover
        }

        // Killed as in the middle of a verification: nothing deleted the view or its export.
        await Server.KillAsync();
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        using var restarted = Server.Client();
        var volumes = await restarted.ListVolumesAsync();
        var exports = await restarted.ListExportsAsync();
        var events = await restarted.ListEventsAsync();

        Assert.DoesNotContain(volumes, v => v.Name == "verify-db-20261206-120000-0123456789ab");
        Assert.Contains(volumes, v => v.Name == "verify-mine");
        Assert.DoesNotContain(exports, e => e.Name.StartsWith("verify-", StringComparison.Ordinal));
        Assert.Contains(events, e => e.Kind == "volume.delete" && e.Subject == "verify-db-20261206-120000-0123456789ab" && e.Actor == "server" && e.Outcome == "ok");
    }

    [Fact]
    public async Task Agent_PairedServer_ReportsMounts_AndRefusesToQuiesceWhatItDoesNotHold()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await using var agent = await StartAgentAsync(identity.Fingerprint, new AgentMountEntry("/nonexistent/tidemark-mount", "other"));
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        await client.CreateVolumeAsync(new CreateVolumeRequest("other", 64 << 20));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));

        var status = await client.GetHostStatusAsync("db1");
        var nothing = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("db", new CreateSnapshotRequest("s", ["db1"])));
        var notMounted = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("other", new CreateSnapshotRequest("s", ["db1"])));
        var after = await client.GetHostStatusAsync("db1");

        Assert.Equal(agent.Identity.Fingerprint, status.Status.Fingerprint);
        Assert.Empty(status.Status.Sessions);
        var declared = Assert.Single(status.Mounts, m => m.Volume is not null);
        Assert.Equal(("/nonexistent/tidemark-mount", "other", false), (declared.Path, declared.Volume, declared.Freezable));
        Assert.Contains("nothing on this host sits on db", nothing.Message, StringComparison.Ordinal);
        Assert.Contains("declared but not mounted", notMounted.Message, StringComparison.Ordinal);
        Assert.Empty(after.Status.Sessions);
        Assert.Empty(await client.ListSnapshotsAsync("db"));
    }

    [Fact]
    public async Task Agent_UnpairedServer_IsRefusedWithItsFingerprint()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await using var agent = await StartAgentAsync(new string('b', 64));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
        await client.AddHostAsync(new AddHostRequest("impostor", agent.Endpoint!.ToString(), new string('c', 64)));

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => client.GetHostStatusAsync("db1"));
        var wrongAgent = await Assert.ThrowsAsync<TidemarkApiException>(() => client.GetHostStatusAsync("impostor"));

        Assert.Equal(HttpStatusCode.BadGateway, refused.Status);
        Assert.Contains($"certificate {identity.Fingerprint} is not a server paired", refused.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadGateway, wrongAgent.Status);
        Assert.Contains("did not answer", wrongAgent.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HostAdd_BadInput_RefusedAndHostUsedByPolicyCannotBeRemoved()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));

        var badFingerprint = await Assert.ThrowsAsync<TidemarkApiException>(() => client.AddHostAsync(new AddHostRequest("db1", "127.0.0.1:8420", "abc")));
        var own = await Assert.ThrowsAsync<TidemarkApiException>(() => client.AddHostAsync(new AddHostRequest("db1", "127.0.0.1:8420", identity.Fingerprint)));
        var badAddress = await Assert.ThrowsAsync<TidemarkApiException>(() => client.AddHostAsync(new AddHostRequest("db1", "nowhere", new string('a', 64))));
        await client.AddHostAsync(new AddHostRequest("db1", "127.0.0.1:8420", new string('a', 64)));
        var twice = await Assert.ThrowsAsync<TidemarkApiException>(() => client.AddHostAsync(new AddHostRequest("db2", "127.0.0.1:8421", new string('a', 64))));
        var unknownHost = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["nope"])));
        var badFallback = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["db1"], Fallback: "maybe")));
        await client.CreatePolicyAsync(new PolicyRequest("app", Volume: "db", Schedule: "every 1h", Hosts: ["db1"], Fallback: "skip"));
        var inUse = await Assert.ThrowsAsync<TidemarkApiException>(() => client.RemoveHostAsync("db1"));
        var hosts = await client.ListHostsAsync();

        Assert.Equal(HttpStatusCode.BadRequest, badFingerprint.Status);
        Assert.Contains("64 hex digits", badFingerprint.Message, StringComparison.Ordinal);
        Assert.Contains("this server's own", own.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.BadRequest, badAddress.Status);
        Assert.Contains("already added as host db1", twice.Message, StringComparison.Ordinal);
        Assert.Contains("no host nope", unknownHost.Message, StringComparison.Ordinal);
        Assert.Contains("fallback must be", badFallback.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Conflict, inUse.Status);
        Assert.Contains("policies app", inUse.Message, StringComparison.Ordinal);
        Assert.Equal("db1", Assert.Single(hosts).Name);
    }

    [Fact]
    public async Task Cli_HostAndSnapshotList_ShowConsistency()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        var data = Server.DataDirectory;

        var added = (await CliProcess.RunAsync("host", "add", "db1", $"127.0.0.1:{FreePort.FindStable()}", "--fingerprint", new string('d', 64), "--data", data)).AssertSuccess();
        var skipped = await CliProcess.RunAsync("snapshot", "create", "db", "--name", "s1", "--consistent", "db1", "--data", data);
        var noHosts = await CliProcess.RunAsync("snapshot", "create", "db", "--consistent", ",", "--data", data);
        (await CliProcess.RunAsync("snapshot", "create", "db", "--name", "s2", "--consistent", "db1", "--fallback", "crash", "--data", data)).AssertSuccess();
        var list = (await CliProcess.RunAsync("snapshot", "list", "db", "--data", data)).AssertSuccess();

        Assert.Contains("db1", added.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(1, skipped.ExitCode);
        Assert.Contains("skipped", skipped.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, noHosts.ExitCode);
        Assert.Contains("CONSISTENCY", list.StandardOutput, StringComparison.Ordinal);
        Assert.Contains("crash (quiesce failed", list.StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ScriptHooks_RunAroundTheCut_OutputInEventsAndFailuresAbortWithTheirOutput()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        var marks = Temp.Combine("marks");
        await using var agent = await StartAgentAsync(
            identity.Fingerprint,
            [],
            [
                new AgentScriptEntry("app", ["db"], $"echo \"pre $TIDEMARK_PHASE $TIDEMARK_VOLUMES\"; echo pre >> {marks}", $"echo post; echo post >> {marks}"),
                new AgentScriptEntry("broken", ["bad"], "echo cannot flush >&2; exit 3", $"echo post-broken >> {marks}"),
                new AgentScriptEntry("slow", ["slow"], "sleep 30", null, TimeoutSeconds: 0.5),
            ]);
        await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
        await client.CreateVolumeAsync(new CreateVolumeRequest("bad", 64 << 20));
        await client.CreateVolumeAsync(new CreateVolumeRequest("slow", 64 << 20));
        await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));

        var taken = await client.CreateSnapshotAsync("db", new CreateSnapshotRequest("s", ["db1"]));
        var broken = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("bad", new CreateSnapshotRequest("s", ["db1"])));
        var slow = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateSnapshotAsync("slow", new CreateSnapshotRequest("s", ["db1"])));
        var scripts = (await client.ListEventsAsync(kind: "agent.script")).Select(e => (e.Message, e.Outcome)).ToList();

        Assert.Equal("application (db1: script app)", taken.Consistency);
        Assert.Equal(["pre", "post"], await File.ReadAllLinesAsync(marks));
        Assert.Contains(scripts, e => e.Message.StartsWith("script app pre (exit 0,", StringComparison.Ordinal) && e.Message.EndsWith("pre pre db", StringComparison.Ordinal) && e.Outcome == "ok");
        Assert.Contains(scripts, e => e.Message.StartsWith("script app post (exit 0,", StringComparison.Ordinal) && e.Message.EndsWith(": post", StringComparison.Ordinal));
        Assert.Contains("script broken pre (exit 3,", broken.Message, StringComparison.Ordinal);
        Assert.Contains("cannot flush", broken.Message, StringComparison.Ordinal);
        Assert.Contains("script slow pre (timed out after 0.5s and was killed", slow.Message, StringComparison.Ordinal);
        Assert.Empty(await client.ListSnapshotsAsync("bad"));
    }

    [Fact]
    public async Task Quiesce_CallerGivesUpBeforeItEnds_AgentResumesAtOnceNotAtItsDeadline()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var self = new CertificateRequest("CN=impatient-server", key, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        using var certificate = X509CertificateLoader.LoadPkcs12(self.Export(X509ContentType.Pkcs12), null);
        var marks = Temp.Combine("marks");
        var directory = Temp.Combine("agent-slow");
        new AgentConfig
        {
            Name = "db1",
            Listen = "127.0.0.1:0",
            DeadlineSeconds = AgentConfig.MaxDeadlineSeconds,
            Servers = [new AgentServerEntry(Convert.ToHexStringLower(SHA256.HashData(certificate.RawData)), DateTimeOffset.UtcNow)],
            Scripts = [new AgentScriptEntry("slow", ["db"], $"echo start >> {marks}; sleep 2; echo pre >> {marks}", $"echo post >> {marks}")],
        }.Save(directory);
        await using var agent = await AgentHost.StartAsync(directory);
        using var handler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                ClientCertificates = [certificate],
                RemoteCertificateValidationCallback = (_, c, _, _) => c is not null && AgentIdentity.FingerprintOf(c) == agent.Identity.Fingerprint,
            },
        };
        using var impatient = new HttpClient(handler) { BaseAddress = new Uri($"https://{agent.Endpoint}/agent/v1/"), Timeout = TimeSpan.FromSeconds(30) };
        using var soon = new CancellationTokenSource();

        // Give up once the quiesce is under way (its PRE hook started), not after a fixed time: on a
        // loaded machine a fixed budget can end before the request even reaches the agent.
        var quiesce = impatient.PostAsJsonAsync("quiesce", new QuiesceRequest(["db"]), ApiJson.Options, soon.Token);
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (!File.Exists(marks) && waited.Elapsed < TimeSpan.FromSeconds(60))
        {
            await Task.Delay(20);
        }

        await soon.CancelAsync();
        var gaveUp = await Record.ExceptionAsync(() => quiesce);
        while ((!File.Exists(marks) || File.ReadAllLines(marks).Length < 3) && waited.Elapsed < TimeSpan.FromSeconds(120))
        {
            await Task.Delay(100);
        }

        var status = await impatient.GetFromJsonAsync<AgentStatusDto>("status", ApiJson.Options);

        Assert.IsAssignableFrom<OperationCanceledException>(gaveUp);
        Assert.Equal(["start", "pre", "post"], await File.ReadAllLinesAsync(marks));
        Assert.Empty(status!.Sessions);
    }

    [Fact]
    public async Task Start_JournalOfAKilledRun_OwedPostHookRuns_UnrestorablePostfixHoldKeptWithReason_StartNotBlocked_ServerRecordsEvents()
    {
        using var client = Server.Client();
        var identity = await client.GetIdentityAsync();
        var marks = Temp.Combine("marks-recovery");
        var directory = Temp.Combine("agent-killed");
        var gonePostfix = Temp.Combine("no-such-postfix");
        new AgentConfig
        {
            Name = "db1",
            Listen = "127.0.0.1:0",
            Servers = [new AgentServerEntry(identity.Fingerprint, DateTimeOffset.UtcNow)],
            Scripts = [new AgentScriptEntry("app", ["db"], "true", $"echo \"post $TIDEMARK_PHASE recovery=$TIDEMARK_RECOVERY $TIDEMARK_VOLUMES\" >> {marks}")],
        }.Save(directory);

        // What a run killed with -9 mid-quiesce leaves: a hold of a Postfix whose config is gone, a
        // freeze of a mount that is not mounted any more, and a pre hook whose post is owed.
        var journal = new QuiesceJournal(directory, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        var postfixEntry = journal.Write(gonePostfix, QuiesceJournalEntry.Create(QuiesceJournalEntry.Postfix) with { PostfixConfig = gonePostfix, Held = "lmtp", AgentPid = 1 });
        var freezeEntry = journal.Write("/nonexistent/frozen", QuiesceJournalEntry.Create(QuiesceJournalEntry.Freeze) with { MountPath = "/nonexistent/frozen", MountId = "99 7:9 /dev/loop9" });
        var scriptEntry = journal.Write("app", QuiesceJournalEntry.Create(QuiesceJournalEntry.ScriptKind) with { Script = "app", Volumes = ["db"] });

        await using (var agent = await AgentHost.StartAsync(directory))
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 64 << 20));
            await client.AddHostAsync(new AddHostRequest("db1", agent.Endpoint!.ToString(), agent.Identity.Fingerprint));
            var status = await client.GetHostStatusAsync("db1");
            var ranAtStart = await File.ReadAllLinesAsync(marks);
            await client.CreateSnapshotAsync("db", new CreateSnapshotRequest("s1", ["db1"]));
            await client.CreateSnapshotAsync("db", new CreateSnapshotRequest("s2", ["db1"]));
            var events = await client.ListEventsAsync(kind: "agent.recovery");

            Assert.Equal(["post post recovery=1 db"], ranAtStart);
            var recovered = status.Status.Recovered!;
            Assert.Equal(3, recovered.Count);
            var postfix = recovered.Single(r => r.Kind == "postfix");
            Assert.False(postfix.Settled);
            Assert.Contains(gonePostfix, postfix.Message, StringComparison.Ordinal);
            Assert.Contains($"undo it by hand: postconf -c {gonePostfix} -X defer_transports", postfix.Message, StringComparison.Ordinal);
            Assert.Contains(recovered, r => r.Kind == "freeze" && r.Settled && r.Message.Contains("nothing is mounted there now", StringComparison.Ordinal));
            Assert.Contains(recovered, r => r.Kind == "script" && r.Settled && r.Message.Contains("ran the post hook now", StringComparison.Ordinal));
            Assert.True(File.Exists(postfixEntry), "the hold that could not be undone stays in the journal for the next start");
            Assert.False(File.Exists(freezeEntry));
            Assert.False(File.Exists(scriptEntry));

            // Told to the server once, with the first quiesce after the start.
            Assert.Equal(3, events.Count);
            Assert.All(events, e => Assert.Equal("db1", e.Subject));
            Assert.Single(events, e => e.Outcome == "failed" && e.Message.StartsWith("postfix: ", StringComparison.Ordinal));
        }

        // The next start tries the kept entry again and still starts.
        await using var again = await AgentHost.StartAsync(directory);
        Assert.True(File.Exists(postfixEntry));
    }

    [Fact]
    public async Task Cli_AgentPairMail_BadInput_ClearErrorExit2_NothingWritten()
    {
        var fingerprint = new string('e', 64);
        var paired = Temp.Combine("agent-paired");
        var root = System.IO.Directory.CreateDirectory(Temp.Combine("mailroot")).FullName;
        var noPostfix = System.IO.Directory.CreateDirectory(Temp.Combine("not-postfix")).FullName;
        (await CliProcess.RunAsync("agent", "pair", "--agent-dir", paired, "--server-fingerprint", fingerprint, "--listen", "127.0.0.1:0", "--mount", $"{root}=mail")).AssertSuccess();
        var before = await File.ReadAllTextAsync(AgentConfig.PathIn(paired));
        (string Mail, string Says)[] cases =
        [
            ($"postfix={noPostfix}", "--mail needs root=MAILROOT"),
            ($"root={root},colour=blue", "--mail takes root=MAILROOT"),
            ($"root={root},root={root}", "each once"),
            ("root=/nonexistent/tidemark-mail", "--mail root=/nonexistent/tidemark-mail: no such directory"),
            ("root=relative/mail", "--mail root=relative/mail: no such directory"),
            ($"root={root},postfix={noPostfix}", $"--mail postfix={noPostfix}: no Postfix configuration there (no main.cf)"),
            ($"root={root},dovecot=/nonexistent/dovecot.conf", "--mail dovecot=/nonexistent/dovecot.conf: no such file"),
            ($"root={root},index-before-hold=-1", "--mail index-before-hold=-1: give the seconds"),
        ];

        foreach (var (mail, says) in cases)
        {
            var fresh = Temp.Combine($"agent-fresh-{Guid.NewGuid():N}");
            var onPaired = await CliProcess.RunAsync("agent", "pair", "--agent-dir", paired, "--server-fingerprint", fingerprint, "--mail", mail);
            var onFresh = await CliProcess.RunAsync("agent", "pair", "--agent-dir", fresh, "--server-fingerprint", fingerprint, "--mail", mail);

            Assert.True(onPaired.ExitCode == 2, $"{mail}: exit {onPaired.ExitCode}: {onPaired.StandardError}");
            Assert.Contains(says, onPaired.StandardError, StringComparison.Ordinal);
            Assert.StartsWith("error: ", onPaired.StandardError, StringComparison.Ordinal);
            Assert.Equal(2, onFresh.ExitCode);
            Assert.Equal(before, await File.ReadAllTextAsync(AgentConfig.PathIn(paired)));
            Assert.False(System.IO.Directory.Exists(fresh), $"{mail}: a refused pairing created {fresh}");
        }
    }

    private Task<AgentHost> StartAgentAsync(string serverFingerprint, params AgentMountEntry[] mounts) => StartAgentAsync(serverFingerprint, mounts, []);

    private async Task<AgentHost> StartAgentAsync(string serverFingerprint, IReadOnlyList<AgentMountEntry> mounts, IReadOnlyList<AgentScriptEntry> scripts)
    {
        var directory = Temp.Combine($"agent-{Guid.NewGuid():N}");
        new AgentConfig
        {
            Name = "db1",
            Listen = "127.0.0.1:0",
            Servers = [new AgentServerEntry(serverFingerprint, DateTimeOffset.UtcNow)],
            Mounts = mounts,
            Scripts = scripts,
        }.Save(directory);
        return await AgentHost.StartAsync(directory);
    }
}
