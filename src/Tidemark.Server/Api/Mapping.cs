using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Server.Api;

/// <summary>Engine records to API resources (the API never exposes engine internals such as lineages and epochs).</summary>
public static class Mapping
{
    public static PoolDto ToDto(this PoolInfo info) => new(
        info.Id,
        info.Directory,
        info.CapacityBytes,
        info.UsedBytes,
        info.FreeBytes,
        [.. info.Stores.Select(s => new StoreDto(s.Index, s.Path, s.Kind.ToString().ToLowerInvariant(), s.CapacityBytes))],
        info.Volumes,
        info.Snapshots);

    public static VolumeDto ToDto(this Volume volume, Pool pool, ExportRegistry exports) => new(
        volume.Id,
        volume.Name,
        volume.Kind.ToString().ToLowerInvariant(),
        volume.Origin,
        volume.SizeBytes,
        volume.LogicalBlockSizeBytes,
        volume.CreatedAt,
        pool.ListSnapshots(volume.Name).Count,
        exports.ExportsOfTarget(volume.Name),
        volume.AllocatedBytes);

    public static SnapshotDto ToDto(this SnapshotInfo s) => new(
        s.Address,
        s.Volume,
        s.Name,
        s.CreatedAt,
        s.SizeBytes,
        s.Held || s.HoldUntil > DateTimeOffset.UtcNow,
        s.Held,
        s.HoldUntil,
        s.HoldReason,
        s.GroupSnapshot,
        s.Id);

    /// <summary>With its consistency (ADR 0015): a snapshot nothing was quiesced for is crash-consistent.</summary>
    public static SnapshotDto ToDto(this SnapshotInfo s, Agents.ConsistencyRecord? consistency, Agents.VerificationRecord? verification = null) =>
        s.ToDto() with
        {
            Consistency = consistency?.Label ?? Agents.ConsistencyRecord.Crash,
            Verification = verification is null ? null : Agents.SnapshotVerifier.ToDto(verification),
        };

    public static GroupDto ToDto(this GroupInfo g) => new(g.Name, g.Volumes, g.CreatedAt);

    public static VerifyDto ToDto(this VerifyReport r) =>
        new(r.IsClean, r.Problems, r.ReferencedBytes, r.LiveMappedBlocks, r.HistoryRecords, r.ControlRecords);
}
