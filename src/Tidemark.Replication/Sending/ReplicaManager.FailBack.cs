using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// Fail-back and role changes live in FailBack; the manager keeps the entry points the endpoints call.
public sealed partial class ReplicaManager
{
    /// <inheritdoc cref="FailBack.ReverseAsync"/>
    public Task<ReplicaDto> ReverseAsync(string volume, OperationProgress? progress, bool discardWritesAtHome, CancellationToken cancellationToken) =>
        _failBack.ReverseAsync(volume, progress, discardWritesAtHome, cancellationToken);

    /// <inheritdoc cref="FailBack.SuspendForFailBack"/>
    public void SuspendForFailBack(string volume, string partner) => _failBack.SuspendForFailBack(volume, partner);

    /// <inheritdoc cref="FailBack.PromoteAsync"/>
    public Task<(SnapshotInfo Snapshot, string? Note)> PromoteAsync(string volume, CancellationToken cancellationToken) =>
        _failBack.PromoteAsync(volume, cancellationToken);

    /// <inheritdoc cref="FailBack.Demote"/>
    public SnapshotInfo? Demote(string volume, long? generation = null) => _failBack.Demote(volume, generation);
}
