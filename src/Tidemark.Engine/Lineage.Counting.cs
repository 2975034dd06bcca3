using System.Buffers;
using System.Buffers.Binary;
using RocksDbSharp;
using Tidemark.Engine.Map;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine;

/// <summary>
/// How many blocks the live image has allocated, kept exact at O(1) per change so a volume's used
/// space is known without scanning its map (capacity on demand, metrics, the API):
/// allocated = base (the parent's image at ParentEpoch, recorded when the lineage was made)
///           + own mapped entries
///           - blocks the parent's image has allocated that this lineage's own entries hide.
/// The last term changes only when a block's entry stops (or starts) falling through to the parent,
/// that is on the first write or unmap of a block in a view or a rolled-back volume, which then looks
/// the block up in the parent once. Counters are collected with the pages they describe, so the
/// durable pair always matches the durable map. Lineages from before counting report null.
/// </summary>
internal sealed partial class Lineage
{
    private long _ownMapped;
    private long _overridden;
    private bool _counted;
    private bool _countersDirty;

    /// <summary>Blocks allocated in the live image, or null when this pool predates counting for it.</summary>
    public long? MappedBlocks
    {
        get
        {
            lock (_mapLock)
            {
                return MappedBlocksLocked;
            }
        }
    }

    private long? MappedBlocksLocked
    {
        get
        {
            var baseBlocks = Record.ParentLineage == 0 ? 0 : Record.BaseMappedBlocks;
            return _counted && baseBlocks is { } b ? b + _ownMapped - _overridden : null;
        }
    }

    /// <summary>A new lineage: nothing of its own yet.</summary>
    public void StartCounting()
    {
        lock (_mapLock)
        {
            _counted = true;
            _countersDirty = true;
        }
    }

    /// <summary>At open: the durable counters, or zero for a lineage that never wrote, or unknown.</summary>
    public void LoadCounters(byte[]? value, bool hasLivePages)
    {
        lock (_mapLock)
        {
            if (value is { Length: 16 })
            {
                _ownMapped = BinaryPrimitives.ReadInt64BigEndian(value);
                _overridden = BinaryPrimitives.ReadInt64BigEndian(value.AsSpan(8));
                _counted = true;
            }
            else
            {
                _counted = value is null && !hasLivePages;
            }
        }
    }

    /// <summary>The durable counters, as verify compares them with the map.</summary>
    public (long OwnMapped, long Overridden)? CountersForVerify()
    {
        lock (_mapLock)
        {
            return _counted ? (_ownMapped, _overridden) : null;
        }
    }

    /// <summary>True when the parent's image at <see cref="ParentEpoch"/> has the block allocated.</summary>
    public bool ParentHasMapped(long block)
    {
        var one = ArrayPool<MapEntry>.Shared.Rent(1);
        try
        {
            Parent!.Resolve(block, 1, ParentEpoch, one);
            return one[0].IsMapped;
        }
        finally
        {
            ArrayPool<MapEntry>.Shared.Return(one);
        }
    }

    // Every change of a live entry goes through here, under the map lock.
    private void AccountLocked(long block, MapEntry old, MapEntry now)
    {
        if (!_counted)
        {
            return;
        }

        if (old.IsMapped != now.IsMapped)
        {
            _ownMapped += now.IsMapped ? 1 : -1;
            _countersDirty = true;
        }

        var oldFallsThrough = old.Kind == EntryKind.Inherit;
        var nowFallsThrough = now.Kind == EntryKind.Inherit;
        if (oldFallsThrough != nowFallsThrough && Parent is not null && ParentHasMapped(block))
        {
            _overridden += nowFallsThrough ? -1 : 1;
            _countersDirty = true;
        }
    }

    private void CollectCountersLocked(WriteBatch batch)
    {
        if (!_countersDirty || !_counted)
        {
            return;
        }

        var value = new byte[16];
        BinaryPrimitives.WriteInt64BigEndian(value, _ownMapped);
        BinaryPrimitives.WriteInt64BigEndian(value.AsSpan(8), _overridden);
        batch.Put(Keys.Prefix(Keys.Counters, Id), value);
        _countersDirty = false;
    }
}
