using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// How a replication cycle cuts its source snapshot when the replica names hosts (ADR 0015): the
/// server implements it over its agents (quiesce every host, cut, resume, record the consistency).
/// The module cannot see the server, so the server hands it in (<see cref="ReplicaManager.Cutter"/>);
/// a replica without hosts is cut with the pool directly, as before.
/// </summary>
public interface IReplicaSnapshotCutter
{
    /// <summary>Throws a <see cref="StorageException"/> naming the unknown hosts, or saying what a fallback may be.</summary>
    void Check(IReadOnlyList<string> hosts, string? fallback);

    /// <summary>
    /// Cuts <see cref="ReplicaCutRequest.SnapshotName"/> of the volume (a group's members at one
    /// instant) with the hosts quiesced. When a host cannot quiesce, the fallback decides: crash cuts
    /// anyway and labels it so; skip cuts nothing and answers <see cref="ReplicaCut.Skip"/> with the reasons.
    /// </summary>
    Task<ReplicaCut> CutAsync(ReplicaCutRequest request, CancellationToken cancellationToken);
}

/// <param name="Volume">The volume, or the group's name when <paramref name="IsGroup"/>.</param>
/// <param name="Fallback">"crash" or "skip" (<see cref="ReplicaManager.DefaultFallback"/> unless the replica says otherwise).</param>
/// <param name="Actor">Who the events name: "replica:VOLUME".</param>
public sealed record ReplicaCutRequest(string Volume, bool IsGroup, string SnapshotName, IReadOnlyList<string> Hosts, string Fallback, string Actor);

/// <summary>
/// What a cut gave: the snapshots (one per member of a group) and their consistency label
/// ("filesystem (db1: /srv/data (ext4))"; null: cut without agents, crash-consistent), or, for a
/// cut skipped by the fallback, no snapshots and <see cref="Skipped"/> saying why.
/// </summary>
public sealed record ReplicaCut(IReadOnlyList<SnapshotInfo> Snapshots, string? Consistency, string? Skipped = null)
{
    public static ReplicaCut Skip(string reasons) => new([], null, reasons);
}
