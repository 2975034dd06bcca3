namespace Tidemark.Replication;

/// <summary>
/// When a replica's automatic sync is due: every N (counted from the start of the last automatic
/// sync, whatever its outcome) or after each snapshot a policy takes. The scheduler
/// (the server's ReplicaScheduler) asks <see cref="ReplicaManager.Due"/>, which applies this.
/// </summary>
internal static class SyncSchedule
{
    /// <summary>An interval of at least a second ("30s", "5m", "1h"), or null for none.</summary>
    public static void CheckEvery(string? every)
    {
        if (every is null)
        {
            return;
        }

        try
        {
            if (SettingText.Duration(every, "every") < TimeSpan.FromSeconds(1))
            {
                throw new ArgumentException("every must be at least 1s");
            }
        }
        catch (ArgumentException ex)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{ex.Message} (how often to sync, e.g. 30s, 5m, 1h)", ex);
        }
    }

    /// <summary>When the next interval sync is due (MinValue: at once, never attempted); null without an interval.</summary>
    public static DateTimeOffset? NextSync(ReplicaState s) =>
        s.Every is null ? null : (s.LastAttemptAt ?? DateTimeOffset.MinValue) == DateTimeOffset.MinValue ? DateTimeOffset.MinValue : s.LastAttemptAt!.Value + SettingText.Duration(s.Every, "every");

    /// <summary>Whether <paramref name="r"/> should sync now; <paramref name="lastPolicySnapshot"/> is when a policy last snapshotted it.</summary>
    public static bool IsDue(ReplicaState r, DateTimeOffset now, DateTimeOffset? lastPolicySnapshot) =>
        r.Suspended is null && (IntervalDue(r, now) || PolicyDue(r, lastPolicySnapshot));

    private static bool IntervalDue(ReplicaState r, DateTimeOffset now) => r.Every is not null && (NextSync(r) ?? DateTimeOffset.MaxValue) <= now;

    // A policy snapshot taken since the last sync was started: replicate it (the sync takes its own
    // snapshot right after, holding the same data, so the DR site follows the policy's schedule).
    private static bool PolicyDue(ReplicaState r, DateTimeOffset? lastPolicySnapshot) =>
        r.AfterPolicySnapshots && lastPolicySnapshot is { } taken && taken > (r.LastAttemptAt ?? DateTimeOffset.MinValue);
}
