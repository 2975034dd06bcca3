namespace Tidemark.Engine;

/// <summary>Persisted enum values: never renumber.</summary>
public enum StoreKind
{
    File = 0,
    Device = 1,

    /// <summary>Objects in a Ceph RADOS pool (ADR 0017).</summary>
    Rados = 2,
}

/// <summary>A volume, or a view created from a snapshot (writable, exportable).</summary>
public enum VolumeKind
{
    Volume = 0,
    View = 1,
}
