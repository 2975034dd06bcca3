using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>
/// Freezes the declared mount points on the volumes about to be cut (FIFREEZE), in the order
/// declared, and thaws them in reverse. A mount that cannot be frozen thaws the ones already frozen
/// before the failure is reported.
/// </summary>
public sealed class FileSystemPlugin(AgentConfig config, ILogger logger, string mountInfoPath = "/proc/self/mountinfo") : IQuiescePlugin
{
    public string Name => "filesystem";

    public Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct)
    {
        var mounts = LocalMounts.List(config, mountInfoPath).Where(m => m.Volume is not null && volumes.Contains(m.Volume)).ToList();
        if (mounts.Count == 0)
        {
            return Task.FromResult<IQuiesced?>(null);
        }

        var frozen = new List<FileSystemFreeze>();
        var items = new List<string>();
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

                frozen.Add(FileSystemFreeze.Freeze(mount.Path));
                items.Add($"{mount.Path} ({mount.FileSystem})");
            }
        }
        catch
        {
            ThawAll(frozen, logger);
            throw;
        }

        return Task.FromResult<IQuiesced?>(new Frozen(frozen, items, logger));
    }

    private static void ThawAll(List<FileSystemFreeze> frozen, ILogger logger)
    {
        List<Exception>? failures = null;
        for (var i = frozen.Count - 1; i >= 0; i--)
        {
            try
            {
                if (!frozen[i].Thaw())
                {
                    logger.LogWarning("{Path} was no longer frozen when the agent thawed it (thawed by someone else)", frozen[i].Path);
                }
            }
            catch (StorageException ex)
            {
                (failures ??= []).Add(ex);
            }
            finally
            {
                frozen[i].Dispose();
            }
        }

        if (failures is not null)
        {
            throw new AggregateException("some file systems could not be thawed", failures);
        }
    }

    private sealed class Frozen(List<FileSystemFreeze> frozen, IReadOnlyList<string> items, ILogger logger) : IQuiesced
    {
        private int _resumed;

        public string Consistency => "filesystem";

        public IReadOnlyList<string> Items => items;

        public Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) == 0)
            {
                ThawAll(frozen, logger);
            }

            return Task.CompletedTask;
        }
    }
}
