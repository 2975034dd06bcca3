using Tidemark.Replication;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Tests;

/// <summary>When a replica's automatic sync is due (unit: no server).</summary>
public sealed class SyncScheduleTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 6, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void IsDue_AnIntervalReplica_AtOnceWhenNeverAttempted_ThenAnIntervalAfterTheLastAttempt()
    {
        var never = new ReplicaState { Volume = "mail", Every = "5m" };
        var recent = new ReplicaState { Volume = "mail", Every = "5m", LastAttemptAt = Now.AddMinutes(-4) };
        var old = new ReplicaState { Volume = "mail", Every = "5m", LastAttemptAt = Now.AddMinutes(-5) };

        Assert.Equal((true, false, true), (SyncSchedule.IsDue(never, Now, null), SyncSchedule.IsDue(recent, Now, null), SyncSchedule.IsDue(old, Now, null)));
        Assert.Equal(Now.AddMinutes(1), SyncSchedule.NextSync(recent));
    }

    [Fact]
    public void IsDue_AfterPolicySnapshots_OnlyForASnapshotTakenSinceTheLastAttempt_AndNeverWhileSuspended()
    {
        var replica = new ReplicaState { Volume = "mail", AfterPolicySnapshots = true, LastAttemptAt = Now.AddMinutes(-1) };

        Assert.True(SyncSchedule.IsDue(replica, Now, Now.AddSeconds(-10)));
        Assert.False(SyncSchedule.IsDue(replica, Now, Now.AddMinutes(-2)));
        Assert.False(SyncSchedule.IsDue(replica, Now, null));
        replica.Suspended = "the partner fails back into it";
        Assert.False(SyncSchedule.IsDue(replica, Now, Now.AddSeconds(-10)));
    }

    [Fact]
    public void CheckEvery_BelowASecondOrNotADuration_IsRefusedSayingWhatToWrite()
    {
        var ex = Assert.Throws<StorageException>(() => SyncSchedule.CheckEvery("500ms"));

        Assert.Equal(StorageError.InvalidArgument, ex.Error);
        Assert.Contains("e.g. 30s, 5m, 1h", ex.Message, StringComparison.Ordinal);
        Assert.Throws<StorageException>(() => SyncSchedule.CheckEvery("often"));
        SyncSchedule.CheckEvery("30s");
        SyncSchedule.CheckEvery(null);
    }
}
