using Tidemark.Replication;

namespace Tidemark.Server.Agents;

/// <summary>
/// The replication cycle's cut through the agents (ADR 0015): the replication module asks, the
/// coordinator quiesces the replica's hosts, cuts, resumes and records the consistency, exactly as
/// for a policy's snapshot (events name the actor "replica:VOLUME").
/// </summary>
public sealed class AgentReplicaCutter(SnapshotCoordinator coordinator) : IReplicaSnapshotCutter
{
    public void Check(IReadOnlyList<string> hosts, string? fallback)
    {
        _ = coordinator.CheckHosts(hosts);
        _ = SnapshotCoordinator.CheckFallback(fallback, ReplicaManager.DefaultFallback);
    }

    public async Task<ReplicaCut> CutAsync(ReplicaCutRequest request, CancellationToken cancellationToken)
    {
        var fallback = SnapshotCoordinator.CheckFallback(request.Fallback, ReplicaManager.DefaultFallback);
        try
        {
            var (snapshots, consistency) = await coordinator.TakeAsync(
                request.IsGroup ? null : request.Volume,
                request.IsGroup ? request.Volume : null,
                request.SnapshotName,
                request.Hosts,
                fallback,
                request.Actor,
                cancellationToken);
            return new ReplicaCut(snapshots, consistency.Label);
        }
        catch (SnapshotSkippedException ex)
        {
            return ReplicaCut.Skip(ex.Reasons);
        }
    }
}
