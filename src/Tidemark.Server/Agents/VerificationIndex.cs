using Tidemark.Engine;

namespace Tidemark.Server.Agents;

/// <summary>A volume's newest verification: the snapshot it was of, and its verdict.</summary>
public sealed record NewestVerification(string Volume, string Snapshot, Guid Id, VerificationRecord Record)
{
    public string Address => $"{Volume}@{Snapshot}";
}

/// <summary>
/// The newest verification of each volume, for the dashboard's "last verified" and the
/// verification-failed alert (ADR 0016). The live stream asks several times a minute, so it does
/// not walk every snapshot each time: the index is built once from the stored verdicts, then kept
/// up to date as verdicts are stored (<see cref="Remember"/>). A snapshot deleted since is noticed
/// when asked, and that volume alone is looked up again, so its next-newest verdict takes over.
/// </summary>
public sealed class VerificationIndex(Pool pool)
{
    private readonly Lock _lock = new();
    private Dictionary<string, NewestVerification>? _newest;

    /// <summary>Each volume with a verified snapshot that still exists, its newest verdict; in volume order.</summary>
    public IReadOnlyList<NewestVerification> Newest()
    {
        lock (_lock)
        {
            _newest ??= Build();
            foreach (var (volume, entry) in _newest.ToList())
            {
                if (!Exists(entry))
                {
                    var again = NewestOf(volume, id => pool.Control.Get(VerificationRecord.Kind, id.ToString("N")));
                    if (again is null)
                    {
                        _newest.Remove(volume);
                    }
                    else
                    {
                        _newest[volume] = again;
                    }
                }
            }

            return [.. _newest.Values.OrderBy(n => n.Volume, StringComparer.Ordinal)];
        }
    }

    /// <summary>A verdict just stored: it is its volume's newest unless an older-stamped one is somehow newer.</summary>
    public void Remember(string volume, string snapshot, Guid id, VerificationRecord record)
    {
        lock (_lock)
        {
            if (_newest is null)
            {
                return; // not built yet: the first Newest() reads it from the store
            }

            if (!_newest.TryGetValue(volume, out var known) || known.Record.At <= record.At)
            {
                _newest[volume] = new NewestVerification(volume, snapshot, id, record);
            }
        }
    }

    private Dictionary<string, NewestVerification> Build()
    {
        var stored = new Dictionary<Guid, VerificationRecord>();
        foreach (var (name, record) in pool.Control.List(VerificationRecord.Kind))
        {
            if (Guid.TryParseExact(name, "N", out var id))
            {
                stored[id] = record;
            }
        }

        var newest = new Dictionary<string, NewestVerification>(StringComparer.Ordinal);
        if (stored.Count == 0)
        {
            return newest;
        }

        foreach (var volume in pool.Volumes)
        {
            if (NewestOf(volume.Name, stored.GetValueOrDefault) is { } entry)
            {
                newest[volume.Name] = entry;
            }
        }

        return newest;
    }

    private NewestVerification? NewestOf(string volume, Func<Guid, VerificationRecord?> verdictOf)
    {
        IReadOnlyList<SnapshotInfo> snapshots;
        try
        {
            snapshots = pool.ListSnapshots(volume);
        }
        catch (StorageException ex) when (ex.Error == StorageError.NotFound)
        {
            return null; // the volume was deleted
        }

        NewestVerification? newest = null;
        foreach (var s in snapshots)
        {
            if (verdictOf(s.Id) is { } record && (newest is null || record.At > newest.Record.At))
            {
                newest = new NewestVerification(volume, s.Name, s.Id, record);
            }
        }

        return newest;
    }

    private bool Exists(NewestVerification entry)
    {
        try
        {
            return pool.FindSnapshotById(entry.Volume, entry.Id) is not null;
        }
        catch (StorageException ex) when (ex.Error == StorageError.NotFound)
        {
            return false;
        }
    }
}
