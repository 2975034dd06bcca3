using RocksDbSharp;

namespace Tidemark.Engine.Control;

/// <summary>
/// Control records to put and delete in one atomic commit: through <see cref="ControlStore.Update(ControlBatch)"/>
/// alone, or with the engine's own changes through <see cref="Pool.Flush(ControlBatch)"/>. Later
/// changes to the same record win. Not thread-safe; build it on one thread.
/// </summary>
public sealed class ControlBatch
{
    private readonly List<(byte[] Key, byte[]? Value)> _changes = [];

    public int Count => _changes.Count;

    public ControlBatch Put<T>(ControlKind<T> kind, string name, T record)
        where T : class
    {
        ArgumentNullException.ThrowIfNull(record);
        _changes.Add((ControlKeys.Key(kind.Name, name), kind.Encode(record)));
        return this;
    }

    public ControlBatch Delete<T>(ControlKind<T> kind, string name)
        where T : class
    {
        _changes.Add((ControlKeys.Key(kind.Name, name), null));
        return this;
    }

    internal void AddTo(WriteBatch batch)
    {
        foreach (var (key, value) in _changes)
        {
            if (value is null)
            {
                batch.Delete(key);
            }
            else
            {
                batch.Put(key, value);
            }
        }
    }
}
