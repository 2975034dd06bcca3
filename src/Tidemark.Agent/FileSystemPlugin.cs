using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// Freezes the declared mount points on the volumes about to be cut (FIFREEZE), in the order
/// declared, and thaws them in reverse. A mount that cannot be frozen thaws the ones already frozen
/// before the failure is reported.
/// </summary>
public sealed class FileSystemPlugin(AgentConfig config, ILogger logger, string mountInfoPath = "/proc/self/mountinfo", QuiesceJournal? journal = null) : IQuiescePlugin
{
    public string Name => "filesystem";

    public Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct) => QuiesceAsync(new QuiesceScope(volumes, []), ct);

    public Task<IQuiesced?> QuiesceAsync(QuiesceScope scope, CancellationToken ct)
    {
        var effective = scope.Apply(config);
        var mounts = LocalMounts.List(effective, mountInfoPath, procRoot: null).Where(m => m.Volume is not null && scope.Volumes.Contains(m.Volume)).ToList();
        if (mounts.Count == 0)
        {
            return Task.FromResult<IQuiesced?>(null);
        }

        // Checked now, not only at start: a mount made since (the volume mounted over the agent's
        // directory, a bind mount) can put the journal on a file system about to be frozen.
        if (journal is not null && Path.GetDirectoryName(journal.Directory) is { } agentDirectory
            && LocalMounts.DeclaredMountHolding(effective, agentDirectory, mountInfoPath) is { } holding
            && mounts.Any(m => m.Path == LocalMounts.Normalize(holding.Path)))
        {
            throw new StorageException(StorageError.InvalidArgument, LocalMounts.AgentDirectoryProblem(agentDirectory, holding));
        }

        var frozen = new List<(FileSystemFreeze Freeze, string? Entry)>();
        var items = new List<string>();

        // Writes block from the moment FIFREEZE starts (it stops new writes, then syncs) to the thaw.
        var freezeStarted = Stopwatch.GetTimestamp();
        try
        {
            foreach (var mount in mounts)
            {
                if (!mount.Freezable)
                {
                    throw new StorageException(StorageError.Unsupported, mount.FileSystem == "(not mounted)"
                        ? $"{mount.Path} (volume {mount.Volume}) is declared but not mounted on this host; mount it or remove it from the agent's config"
                        : $"{mount.Path} is {mount.FileSystem}, which cannot be frozen; freezable: {string.Join(", ", LocalMounts.Freezable)}");
                }

                // Written down before the freeze: an agent killed now would leave the file system
                // frozen (every writer on it blocked) with nobody to thaw it; its next start does.
                var entry = journal?.Write(mount.Path, QuiesceJournalEntry.Create(QuiesceJournalEntry.Freeze) with { MountPath = mount.Path, MountId = LocalMounts.MountId(mount.Path, mountInfoPath) });
                try
                {
                    frozen.Add((FileSystemFreeze.Freeze(mount.Path), entry));
                }
                catch
                {
                    if (entry is not null)
                    {
                        journal!.Remove(entry);
                    }

                    throw;
                }

                items.Add($"{mount.Path} ({mount.FileSystem})");
            }
        }
        catch
        {
            ThawAll(frozen, logger, journal);
            throw;
        }

        return Task.FromResult<IQuiesced?>(new Frozen(frozen, items, logger, journal, freezeStarted));
    }

    private static void ThawAll(List<(FileSystemFreeze Freeze, string? Entry)> frozen, ILogger logger, QuiesceJournal? journal)
    {
        List<Exception>? failures = null;
        for (var i = frozen.Count - 1; i >= 0; i--)
        {
            var (freeze, entry) = frozen[i];
            try
            {
                if (!freeze.Thaw())
                {
                    AgentLog.AlreadyThawed(logger, freeze.Path);
                }

                if (entry is not null)
                {
                    journal!.Remove(entry);
                }
            }
            catch (StorageException ex)
            {
                // The entry stays: the next start tries the thaw again.
                (failures ??= []).Add(ex);
            }
            finally
            {
                freeze.Dispose();
            }
        }

        if (failures is not null)
        {
            throw new AggregateException("some file systems could not be thawed", failures);
        }
    }

    private sealed class Frozen(List<(FileSystemFreeze Freeze, string? Entry)> frozen, IReadOnlyList<string> items, ILogger logger, QuiesceJournal? journal, long freezeStarted) : IQuiesced
    {
        private int _resumed;

        public string Consistency => ConsistencyLevel.FileSystem;

        public bool UnderApplications => true;

        public IReadOnlyList<string> Items => items;

        public double? FrozenSeconds { get; private set; }

        public Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) == 0)
            {
                try
                {
                    ThawAll(frozen, logger, journal);
                }
                finally
                {
                    FrozenSeconds = Stopwatch.GetElapsedTime(freezeStarted).TotalSeconds;
                }
            }

            return Task.CompletedTask;
        }
    }
}
