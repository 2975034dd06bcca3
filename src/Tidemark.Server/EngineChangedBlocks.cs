using Tidemark.Engine;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server;

/// <summary>
/// Changed-block tracking for an NBD export of a volume, view or snapshot: the engine's diff between
/// an older snapshot of the same volume and the exported image (the live volume, or the snapshot).
/// </summary>
public sealed class EngineChangedBlocks : IChangedBlocks
{
    private readonly Pool _pool;
    private readonly string _volume;
    private readonly string? _snapshot;

    public EngineChangedBlocks(Pool pool, string target)
    {
        _pool = pool;
        var at = target.IndexOf('@', StringComparison.Ordinal);
        (_volume, _snapshot) = at < 0 ? (target, null) : (target[..at], target[(at + 1)..]);
    }

    public IReadOnlyList<string> Bases
    {
        get
        {
            var snapshots = _pool.ListSnapshots(_volume);
            var limit = _snapshot is null ? DateTimeOffset.MaxValue : snapshots.FirstOrDefault(s => s.Name == _snapshot)?.CreatedAt ?? DateTimeOffset.MinValue;
            return [.. snapshots.Where(s => s.CreatedAt < limit).Select(s => s.Name)];
        }
    }

    public IReadOnlyList<(long OffsetBytes, long LengthBytes)>? ChangesSince(string baseName)
    {
        if (baseName == _snapshot || _pool.ListSnapshots(_volume).All(s => s.Name != baseName))
        {
            return null;
        }

        return [.. _pool.Diff(_volume, baseName, _snapshot).Select(r => (r.OffsetBytes, r.LengthBytes))];
    }
}
