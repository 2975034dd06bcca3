using RocksDbSharp;
using Tidemark.Engine.Metadata;

namespace Tidemark.Engine.Control;

/// <summary>
/// The server's durable state (exports, policies, autogrow, tokens, jobs...) as typed, versioned
/// records inside the pool's metadata store: a copy of the pool carries its configuration, every
/// update is one synced atomic batch, and an update can join the engine's own commit
/// (<see cref="Pool.Flush(ControlBatch)"/>). The records are the server's own persisted types, never
/// REST DTOs. Thread-safe. See docs/adr/0011-control-plane-state.md.
/// </summary>
public sealed class ControlStore
{
    private readonly Pool _pool;

    // Serializes read-modify-write updates (ReplaceAll) against each other and against plain updates.
    private readonly Lock _lock = new();

    internal ControlStore(Pool pool)
    {
        _pool = pool;
    }

    public T? Get<T>(ControlKind<T> kind, string name)
        where T : class
    {
        _pool.ThrowIfUnusable();
        var bytes = _pool.Meta.Get(ControlKeys.Key(kind.Name, name));
        return bytes is null ? null : kind.Decode(bytes, name);
    }

    /// <summary>Every record of <paramref name="kind"/>, ordered by the bytes of its name.</summary>
    public IReadOnlyList<KeyValuePair<string, T>> List<T>(ControlKind<T> kind)
        where T : class
    {
        _pool.ThrowIfUnusable();
        var prefix = ControlKeys.Prefix(kind.Name);
        var records = new List<KeyValuePair<string, T>>();
        _pool.Meta.Scan(prefix, (key, value) =>
        {
            var name = ControlKeys.NameOf(key, prefix.Length);
            records.Add(new(name, kind.Decode(value, name)));
            return true;
        });
        return records;
    }

    public void Put<T>(ControlKind<T> kind, string name, T record)
        where T : class =>
        Update(new ControlBatch().Put(kind, name, record));

    public void Delete<T>(ControlKind<T> kind, string name)
        where T : class =>
        Update(new ControlBatch().Delete(kind, name));

    /// <summary>Commits every change of <paramref name="batch"/> atomically and durably (synced), or none.</summary>
    public void Update(ControlBatch batch)
    {
        lock (_lock)
        {
            Write(batch);
        }
    }

    /// <summary>
    /// Makes the records of <paramref name="kind"/> exactly <paramref name="records"/>, atomically:
    /// the shape of an owner that keeps its whole state in memory and saves it after each change.
    /// </summary>
    public void ReplaceAll<T>(ControlKind<T> kind, IEnumerable<KeyValuePair<string, T>> records)
        where T : class
    {
        var batch = new ControlBatch();
        var keep = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, record) in records)
        {
            if (!keep.Add(name))
            {
                throw new ArgumentException($"two {kind.Name} records are named '{name}'", nameof(records));
            }

            batch.Put(kind, name, record);
        }

        lock (_lock)
        {
            var prefix = ControlKeys.Prefix(kind.Name);
            var stale = new List<string>();
            _pool.Meta.Scan(prefix, (key, _) =>
            {
                var name = ControlKeys.NameOf(key, prefix.Length);
                if (!keep.Contains(name))
                {
                    stale.Add(name);
                }

                return true;
            });
            foreach (var name in stale)
            {
                batch.Delete(kind, name);
            }

            Write(batch);
        }
    }

    private void Write(ControlBatch batch)
    {
        if (batch.Count == 0)
        {
            return;
        }

        using var write = new WriteBatch();
        batch.AddTo(write);
        _pool.WriteControl(write);
    }
}
