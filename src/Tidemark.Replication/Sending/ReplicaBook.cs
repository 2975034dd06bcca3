using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The replicas this server sends, by volume or group, as the control records of
/// <see cref="ReplicaManager.Kind"/> (ADR 0011), and the lock that guards them: shared by the
/// sync cycle and fail-back, which both change replica state.
/// </summary>
internal sealed class ReplicaBook(Pool pool, ControlKind<ReplicaState> kind)
{
    public Lock Lock { get; } = new();

    public SortedDictionary<string, ReplicaState> Replicas { get; } = new(StringComparer.Ordinal);

    /// <summary>The volumes a replica sends: a group's members, or the one volume.</summary>
    public IEnumerable<string> Members(ReplicaState replica) =>
        replica.IsGroup ? pool.Groups.FirstOrDefault(g => g.Name == replica.Volume)?.Volumes ?? [] : [replica.Volume];

    // Every record, atomically: the caller holds Lock, and a change may touch several replicas.
    public void Save() =>
        pool.Control.ReplaceAll(kind, Replicas.Select(r => new KeyValuePair<string, ReplicaState>(r.Key, r.Value)));
}
