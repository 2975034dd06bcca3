using System.Text.Json.Serialization;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// A replica as this server keeps it: what is saved is its persisted layout (kind "replica",
/// version 1; the layout of an entry of DATA/replicas.json of older versions). Saved property
/// names are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
internal sealed class ReplicaState
{
    public string Volume { get; set; } = "";

    public string Partner { get; set; } = "";

    public string RemoteVolume { get; set; } = "";

    public string? Every { get; set; }

    public DateTimeOffset? LastAttemptAt { get; set; }

    public string? LastSnapshot { get; set; }

    public DateTimeOffset? LastSnapshotCreatedAt { get; set; }

    public DateTimeOffset? LastSyncAt { get; set; }

    public long BytesSent { get; set; }

    public long LastBytesSent { get; set; }

    public long LastRangeBytes { get; set; }

    public double? LastDurationSeconds { get; set; }

    public int Retries { get; set; }

    public string? LastError { get; set; }

    /// <summary>Sync after each snapshot a policy takes of the volume or group.</summary>
    public bool AfterPolicySnapshots { get; set; }

    /// <summary><see cref="Volume"/> names a group, replicated as one unit.</summary>
    public bool IsGroup { get; set; }

    /// <summary>Bytes per second at most on the link ("20M"), or null.</summary>
    public string? Bandwidth { get; set; }

    /// <summary>This relationship sends a promoted replica back to the site it came from (fail-back).</summary>
    public bool Reverse { get; set; }

    /// <summary>A reverse sync may revert what the partner wrote after the common snapshot (split brain resolved by the administrator's flag).</summary>
    public bool DiscardWritesAtPartner { get; set; }

    /// <summary>Where the partner keeps the writes the last fail-back discarded (for 'replica show'), or null.</summary>
    public string? DiscardedWrites { get; set; }

    /// <summary>Why syncs are held (the partner fails back into this volume), or null.</summary>
    public string? Suspended { get; set; }

    /// <summary>The partner's volume holds a copy of this one already: with no snapshot in common it is compared by hash scan.</summary>
    public bool Seed { get; set; }

    /// <summary>The replication snapshot of a transfer not yet complete at the partner (saved before it is sent, so a restart continues it too).</summary>
    public string? PendingSnapshot { get; set; }

    /// <summary>Why the running sync waits to retry (not saved).</summary>
    [JsonIgnore]
    public string? Retrying { get; set; }

    /// <summary>The sync under way, if any (not saved).</summary>
    [JsonIgnore]
    public (OperationProgress Progress, DateTimeOffset Started)? Running { get; set; }

    /// <summary>Exports the partner brings up when it promotes the replica (null: none were ever set).</summary>
    public List<StandbyExportDto>? StandbyExports { get; set; }

    /// <summary>zstd level of the streams (0: none).</summary>
    public int CompressionLevel { get; set; } = ReplicaManager.DefaultCompressionLevel;

    /// <summary>Bytes the last hash scan compared (0: none yet).</summary>
    public long LastScannedBytes { get; set; }

    // The fields below (ADR 0015) are optional and left out when null, so a replica without agents is
    // saved byte for byte as before and a record written before they existed reads as "no agents".

    /// <summary>Hosts whose agents quiesce the application around each cycle's snapshot (null: none, crash-consistent).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public List<string>? Hosts { get; set; }

    /// <summary>When a host cannot quiesce: "crash" (send a crash-consistent snapshot, labelled so) or "skip" (no cycle); null: crash.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? Fallback { get; set; }

    /// <summary>The consistency label of <see cref="LastSnapshot"/> when it was cut through agents (null: crash-consistent).</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? LastConsistency { get; set; }

    /// <summary>The consistency label of <see cref="PendingSnapshot"/> when it was cut through agents: a continued transfer keeps it.</summary>
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
    public string? PendingConsistency { get; set; }
}
