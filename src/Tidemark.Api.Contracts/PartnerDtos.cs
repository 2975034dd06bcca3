namespace Tidemark.Api;

/// <summary>This server as a replication partner sees it: the fingerprint to pin and where to connect.</summary>
public sealed record IdentityDto(string Fingerprint, string? ReplicationAddress, Guid PoolId);

/// <summary>A paired server: replication goes only to and from partners, each pinned by certificate fingerprint.</summary>
public sealed record PartnerDto(string Name, string Address, string Fingerprint, DateTimeOffset AddedAt);

public sealed record AddPartnerRequest(string Name, string Address, string Fingerprint);

/// <summary>What a partner answered over the replication link.</summary>
public sealed record PartnerHelloDto(string Fingerprint, Guid PoolId, string Version, DateTimeOffset Time);

/// <summary>What an imported snapshot stream made: the snapshot, and how much the stream carried.</summary>
public sealed record StreamImportDto(SnapshotDto Snapshot, bool Incremental, long Records, long DataBytes, long ZeroBytes);
