using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Metrics;
using Tidemark.Server.Replication;
using EventLog = Tidemark.Server.Events.EventLog;

namespace Tidemark.Server.Agents;

/// <summary>
/// Proves a snapshot mountable (ADR 0015, "SureBackup"): makes a throwaway view of it and an NBD
/// export of the view, asks a host's agent to attach, mount read-only and check it (fsck -n,
/// PostgreSQL + pg_amcheck), then deletes the export and the view, also when the agent fails or
/// cannot be reached. The verdict is a <see cref="VerificationRecord"/> keyed by the snapshot's id;
/// a failure raises a `snapshot.verify` event with outcome failed; /metrics counts verdicts.
/// </summary>
public sealed partial class SnapshotVerifier(AgentChannel agents) : IMetricsSource
{
    private readonly Dictionary<string, long> _verdicts = new(StringComparer.Ordinal)
    {
        [VerifyResultDto.Passed] = 0,
        [VerifyResultDto.Failed] = 0,
        [VerifyResultDto.NotChecked] = 0,
    };

    private double _lastSeconds;

    /// <summary>Every verification view's name starts so: verify-VOLUME-STAMP-RANDOM.</summary>
    public const string ViewPrefix = "verify-";

    /// <summary>Mounting, fsck of a large file system and pg_amcheck of a large cluster take minutes, not the quiesce's one.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromMinutes(60);

    private readonly VerificationIndex _index = new(agents.Pool);

    /// <summary>Each volume's newest verdict (the dashboard's "last verified" and the verification-failed alert).</summary>
    public IReadOnlyList<NewestVerification> NewestPerVolume() => _index.Newest();

    public VerificationRecord? VerificationOf(Guid id) => agents.Pool.Control.Get(VerificationRecord.Kind, id.ToString("N"));

    public IReadOnlyDictionary<Guid, VerificationRecord> Verifications()
    {
        var all = new Dictionary<Guid, VerificationRecord>();
        foreach (var (name, record) in agents.Pool.Control.List(VerificationRecord.Kind))
        {
            if (Guid.TryParseExact(name, "N", out var id))
            {
                all[id] = record;
            }
        }

        return all;
    }

    /// <summary>Verifies <paramref name="address"/> (VOLUME@SNAPSHOT) on <paramref name="hostName"/>'s agent and stores the verdict.</summary>
    public Task<VerificationRecord> VerifyAsync(string address, string hostName, string actor, CancellationToken ct) =>
        VerifyAsync(address, [hostName], actor, ct);

    /// <summary>
    /// Verifies <paramref name="address"/> through the first of <paramref name="hostNames"/> that checks
    /// it: a host that is down, or cannot check this volume (not-checked), hands over to the next, so one
    /// host out of service does not leave a policy's snapshots unverified. One view serves every try.
    /// </summary>
    public async Task<VerificationRecord> VerifyAsync(string address, IReadOnlyList<string> hostNames, string actor, CancellationToken ct) =>
        (await VerifyCutAsync([agents.Pool.GetSnapshot(address)], hostNames, actor, ct))[0];

    /// <summary>
    /// Verifies the snapshots named <paramref name="snapshotName"/> of every member of
    /// <paramref name="group"/> (one cut) together: one view per member, all handed to the same agent in
    /// one request, so a PostgreSQL cluster whose data and WAL sit on two members starts on the view
    /// pair. The verdict is stored on every snapshot of the cut.
    /// </summary>
    public Task<IReadOnlyList<VerificationRecord>> VerifyGroupAsync(string group, string snapshotName, IReadOnlyList<string> hostNames, string actor, CancellationToken ct)
    {
        var members = agents.Pool.Groups.FirstOrDefault(g => g.Name == group)?.Volumes ?? throw new StorageException(StorageError.NotFound, $"no group {group}; 'tidemark group list' shows them");
        return VerifyCutAsync([.. members.Select(v => agents.Pool.GetSnapshot($"{v}@{snapshotName}"))], hostNames, actor, ct);
    }

    private async Task<IReadOnlyList<VerificationRecord>> VerifyCutAsync(IReadOnlyList<SnapshotInfo> snapshots, IReadOnlyList<string> hostNames, string actor, CancellationToken ct)
    {
        var candidates = hostNames.Select(agents.Hosts.Get).ToList();
        if (candidates.Count == 0)
        {
            throw new StorageException(StorageError.InvalidArgument, "a verification needs a host whose agent checks the view");
        }

        var started = Stopwatch.GetTimestamp();
        var stamp = agents.Time.GetUtcNow().UtcDateTime.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture);
        VerifyResultDto result = new(VerifyResultDto.NotChecked, "no host was asked", [], 0);
        var host = candidates[0];
        var passedOver = new List<string>();
        var views = new List<string>();
        try
        {
            var members = new List<VerifyMember>();
            foreach (var snapshot in snapshots)
            {
                // The name says what it is for (a server that starts deletes any left by a server killed
                // mid-verification: DeleteLeftoverViews); the random part keeps a guessing NBD client from
                // finding the export of a view of someone's data.
                var view = $"{ViewPrefix}{(snapshot.Volume.Length > 20 ? snapshot.Volume[..20] : snapshot.Volume)}-{stamp}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}";
                agents.Pool.CreateView(snapshot.Address, view);
                views.Add(view);
                var export = agents.Exports.Create(new CreateExportRequest(Target: view, Name: view));
                if (export.Url is null)
                {
                    break;
                }

                members.Add(new VerifyMember(snapshot.Address, snapshot.Volume, export.Url));
            }

            if (members.Count < snapshots.Count)
            {
                result = new VerifyResultDto(VerifyResultDto.NotChecked, "this server has no NBD listener, so an agent cannot attach a view; start it with an NBD address", [], 0);
            }
            else
            {
                var request = new VerifyRequest(members[0].Snapshot, members[0].Volume, members[0].ExportUrl, members.Count > 1 ? members[1..] : null);
                foreach (var candidate in candidates)
                {
                    host = candidate;
                    using var link = agents.Open(candidate, CallTimeout);
                    try
                    {
                        result = await link.VerifyAsync(request, ct);
                    }
                    catch (StorageException ex) when (ex.Error is not StorageError.Busy)
                    {
                        result = new VerifyResultDto(VerifyResultDto.NotChecked, ex.Message, [], 0);
                    }

                    if (result.Verdict != VerifyResultDto.NotChecked)
                    {
                        break;
                    }

                    passedOver.Add($"{candidate.Name}: {result.Reason}");
                    AgentsLog.HostDidNotCheck(agents.Logger, candidate.Name, members[0].Snapshot, result.Reason);
                }

                if (result.Verdict == VerifyResultDto.NotChecked && passedOver.Count > 1)
                {
                    result = result with { Reason = "no host checked it: " + string.Join("; ", passedOver) };
                }
            }
        }
        finally
        {
            foreach (var view in views)
            {
                DeleteView(view);
            }
        }

        var record = new VerificationRecord(result.Verdict, result.Reason, result.Checks ?? [], Stopwatch.GetElapsedTime(started).TotalSeconds, host.Name, agents.Time.GetUtcNow());
        var batch = new Engine.Control.ControlBatch();
        foreach (var snapshot in snapshots)
        {
            batch.Put(VerificationRecord.Kind, snapshot.Id.ToString("N"), record);
        }

        agents.Pool.Control.Update(batch);
        var summary = ToDto(record).Summary;
        foreach (var snapshot in snapshots)
        {
            // Per snapshot, as for a single volume: the console's index and the verification-failed alert are per volume.
            _index.Remember(snapshot.Volume, snapshot.Name, snapshot.Id, record);
            lock (_verdicts)
            {
                _verdicts[record.Verdict] = _verdicts.GetValueOrDefault(record.Verdict) + 1;
                _lastSeconds = record.Seconds;
            }

            agents.Events.Record("snapshot.verify", snapshot.Address, actor, $"{summary} (on host {host.Name})", record.Verdict switch
            {
                VerifyResultDto.Passed => "ok",
                VerifyResultDto.Failed => "failed",
                _ => "skipped",
            });
        }

        AgentsLog.SnapshotVerified(agents.Logger, string.Join(", ", snapshots.Select(s => s.Address)), host.Name, summary);
        return [.. snapshots.Select(_ => record)];
    }

    /// <summary>Deletes a verification view and its export; one that will not go is logged and an event, never an error (the verdict stands).</summary>
    private void DeleteView(string view)
    {
        try
        {
            agents.Exports.Delete(view);
        }
        catch (StorageException ex)
        {
            AgentsLog.VerificationExportNotDeleted(agents.Logger, view, ex.Message);
        }

        try
        {
            agents.Pool.DeleteVolume(view);
        }
        catch (StorageException ex)
        {
            AgentsLog.VerificationViewNotDeleted(agents.Logger, view, ex.Message);
            agents.Events.Record("volume.delete", view, "server", $"verification view not deleted: {ex.Message}; 'tidemark view delete {view}'", "failed");
        }
    }

    /// <summary>
    /// At start: deletes the views (and their exports) that a server killed mid-verification left
    /// behind. They hold a snapshot's space and an NBD export of its data, and nothing else uses them:
    /// only a view whose name has the full shape this class gives (verify-VOLUME-yyyyMMdd-HHmmss-12 hex)
    /// is touched, never a volume an operator named verify-something. Each deletion is an event.
    /// </summary>
    public IReadOnlyList<string> DeleteLeftoverViews()
    {
        var deleted = new List<string>();
        foreach (var volume in agents.Pool.Volumes.Where(v => v.Kind == VolumeKind.View && LeftoverName().IsMatch(v.Name)).ToList())
        {
            try
            {
                agents.DeleteViewWithExports(volume.Name);
                deleted.Add(volume.Name);
                AgentsLog.LeftoverViewDeleted(agents.Logger, volume.Name, volume.Origin);
                agents.Events.Record("volume.delete", volume.Name, "server", $"verification view of {volume.Origin} left by a server stopped during a verification: deleted", "ok");
            }
            catch (StorageException ex)
            {
                AgentsLog.LeftoverViewNotDeleted(agents.Logger, volume.Name, ex.Message);
                agents.Events.Record("volume.delete", volume.Name, "server", $"leftover verification view not deleted: {ex.Message}; 'tidemark view delete {volume.Name}'", "failed");
            }
        }

        return deleted;
    }

    [System.Text.RegularExpressions.GeneratedRegex(@"^verify-.{1,20}-[0-9]{8}-[0-9]{6}-[0-9a-f]{12}$")]
    private static partial System.Text.RegularExpressions.Regex LeftoverName();

    public static SnapshotVerificationDto ToDto(VerificationRecord r) => new(r.Verdict, r.Reason, r.Checks, r.Seconds, r.Host, r.At);

    public void CreateInstruments(Meter meter)
    {
        meter.CreateObservableCounter(
            "tidemark_snapshot_verifications_total",
            () =>
            {
                lock (_verdicts)
                {
                    return _verdicts.OrderBy(v => v.Key, StringComparer.Ordinal).Select(v => new Measurement<long>(v.Value, new KeyValuePair<string, object?>("verdict", v.Key))).ToList();
                }
            },
            description: "Snapshot verifications since the server started, by verdict (passed, failed, not-checked).");
        meter.CreateObservableGauge(
            "tidemark_snapshot_verification_last_seconds",
            () =>
            {
                lock (_verdicts)
                {
                    return _lastSeconds;
                }
            },
            description: "How long the last snapshot verification took (view, mount, checks, teardown).");
    }
}
