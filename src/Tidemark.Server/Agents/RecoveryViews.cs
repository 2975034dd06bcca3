using Tidemark.Engine;
using Tidemark.Engine.Control;

namespace Tidemark.Server.Agents;

/// <summary>
/// What marks a view as a recovery's throwaway (persisted; field names never change): a control
/// record (kind "recovery-view", version 1) named by the view, written before the view is created
/// and deleted once the view is gone. <see cref="Origin"/>: the snapshot it is a view of;
/// <see cref="Purpose"/>: who made it for what ("mail recovery job 7f3a by alice"); <see cref="At"/>:
/// when the record was written, just before the view.
/// </summary>
public sealed record RecoveryViewRecord(string Origin, string Purpose, DateTimeOffset At)
{
    public static readonly ControlKind<RecoveryViewRecord> Kind = new("recovery-view", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });
}

/// <summary>
/// The throwaway views recoveries make: the server's mail recovery jobs (<see cref="MailRecoveryRunner"/>)
/// and a recovery host mounting a snapshot (Tidemark.Recovery's MountedSnapshot, through
/// <c>POST /views</c> with purpose "recovery"). A server killed mid-recovery leaves such a view, and
/// its NBD export, with nothing to delete them: the recovery's job died with the process (a host's
/// recovery lost its export at the same moment). So at start every view marked by a
/// <see cref="RecoveryViewRecord"/> goes with its exports and an event. The record, not the name,
/// decides: an operator's view named recover-something has none and is never touched, nor is a view
/// that only shares a marked name (another snapshot's, or made before the record).
/// </summary>
public sealed class RecoveryViews(AgentChannel agents)
{
    /// <summary>Marks, then creates, view <paramref name="view"/> of <paramref name="snapshotAddress"/>.</summary>
    public Volume Create(string snapshotAddress, string view, string purpose)
    {
        Names.Check("view", view);
        var control = agents.Pool.Control;
        if (control.Get(RecoveryViewRecord.Kind, view) is not null)
        {
            throw new StorageException(StorageError.AlreadyExists, $"a recovery view named {view} exists already");
        }

        control.Put(RecoveryViewRecord.Kind, view, new RecoveryViewRecord(snapshotAddress, purpose, agents.Time.GetUtcNow()));
        try
        {
            return agents.Pool.CreateView(snapshotAddress, view);
        }
        catch
        {
            // The name may be an operator's volume: the mark must not stay on it.
            control.Delete(RecoveryViewRecord.Kind, view);
            throw;
        }
    }

    /// <summary>Unmarks <paramref name="view"/> once it is deleted (or promoted: then it is kept on purpose).</summary>
    public void Forget(string view)
    {
        if (agents.Pool.Control.Get(RecoveryViewRecord.Kind, view) is not null)
        {
            agents.Pool.Control.Delete(RecoveryViewRecord.Kind, view);
        }
    }

    /// <summary>
    /// At start, before anything can make a new one: deletes every marked view with its exports and
    /// an event, and drops the marks whose view is gone. A view that will not go keeps its mark, so
    /// the next start tries again. Returns the views deleted.
    /// </summary>
    public IReadOnlyList<string> DeleteLeftovers()
    {
        var deleted = new List<string>();
        foreach (var (name, record) in agents.Pool.Control.List(RecoveryViewRecord.Kind))
        {
            var volume = agents.Pool.Volumes.FirstOrDefault(v => v.Name == name);
            if (volume is not null && IsMarkedView(volume, record))
            {
                try
                {
                    agents.DeleteViewWithExports(name);
                }
                catch (StorageException ex)
                {
                    AgentsLog.LeftoverRecoveryViewNotDeleted(agents.Logger, name, ex.Message);
                    agents.Events.Record("volume.delete", name, "server", $"view {name} left by a recovery interrupted at the last stop ({record.Purpose}) not deleted: {ex.Message}; 'tidemark view delete {name}'", "failed");
                    continue;
                }

                deleted.Add(name);
                AgentsLog.LeftoverRecoveryViewDeleted(agents.Logger, name, record.Origin, record.Purpose);
                agents.Events.Record("volume.delete", name, "server", $"deleted view {name} (of {record.Origin}) left by a recovery interrupted at the last stop ({record.Purpose})", "ok");
            }

            agents.Pool.Control.Delete(RecoveryViewRecord.Kind, name);
        }

        return deleted;
    }

    /// <summary>The view its record marks: still a view, of the same snapshot, made after the record (a minute's leeway for the clocks).</summary>
    private static bool IsMarkedView(Volume volume, RecoveryViewRecord record) =>
        volume.Kind == VolumeKind.View && volume.Origin == record.Origin && volume.CreatedAt >= record.At - TimeSpan.FromMinutes(1);
}
