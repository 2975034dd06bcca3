using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>
/// What a quiesce changed outside the agent, written down before it is changed (ADR 0015): an agent
/// killed with -9 (or a host that loses power) in the middle of a hold must not leave Postfix
/// deferring mail forever or a file system frozen. Each step that changes outside state writes one
/// entry, AGENTDIR/journal/KIND-KEY.json, durably (a temporary file, fsync, rename, fsync of the
/// directory) before the change, and removes it once the change is undone. At start the agent undoes
/// every entry it finds (<see cref="JournalRecovery"/>) before it listens.
/// </summary>
public sealed partial class QuiesceJournal
{
    public const string DirectoryName = "journal";

    private static readonly JsonSerializerOptions _json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    private readonly ILogger _logger;

    public QuiesceJournal(string agentDirectory, ILogger logger)
    {
        Directory = Path.Combine(agentDirectory, DirectoryName);
        _logger = logger;
    }

    public string Directory { get; }

    /// <summary>This boot of the host: a file system frozen before a reboot is not frozen after it.</summary>
    public static string BootId()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return "unknown";
        }
    }

    /// <summary>Writes <paramref name="entry"/> durably under a name made of its kind and <paramref name="key"/>; returns its path for <see cref="Remove"/>.</summary>
    public string Write(string key, QuiesceJournalEntry entry)
    {
        var path = Path.Combine(Directory, $"{entry.Kind}-{Safe(key)}.json");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            var temp = path + ".tmp";
            using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                stream.Write(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(entry, _json) + "\n"));
                stream.Flush(flushToDisk: true);
            }

            File.Move(temp, path, overwrite: true);
            SyncDirectory();
            return path;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Nothing is changed that could not be undone after a crash: the step is refused instead.
            throw new StorageException(StorageError.IoError, $"cannot write the quiesce journal {path} ({ex.Message}), so nothing was held; make {Directory} writable by the agent");
        }
    }

    /// <summary>The change is undone: the entry goes (durably, so a crash right after does not undo it twice).</summary>
    public void Remove(string path)
    {
        try
        {
            File.Delete(path);
            SyncDirectory();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // Undoing it again at the next start is harmless (recovery checks the state it finds first).
            AgentLog.JournalEntryNotRemoved(_logger, path, ex.Message);
        }
    }

    /// <summary>Every entry, oldest first; one that cannot be read is returned with a null entry and the reason.</summary>
    public IReadOnlyList<(string Path, QuiesceJournalEntry? Entry, string? Error)> List()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            return [];
        }

        var result = new List<(string, QuiesceJournalEntry?, string?)>();
        foreach (var path in System.IO.Directory.EnumerateFiles(Directory, "*.json").OrderBy(File.GetLastWriteTimeUtc))
        {
            try
            {
                var entry = JsonSerializer.Deserialize<QuiesceJournalEntry>(File.ReadAllText(path), _json);
                result.Add(entry is { Version: QuiesceJournalEntry.CurrentVersion } ? (path, entry, null) : (path, null, $"format version {entry?.Version} is not {QuiesceJournalEntry.CurrentVersion}"));
            }
            catch (Exception ex) when (ex is JsonException or IOException or UnauthorizedAccessException)
            {
                result.Add((path, null, ex.Message));
            }
        }

        // A temporary file is a write that never completed: its change was never made.
        foreach (var temp in System.IO.Directory.EnumerateFiles(Directory, "*.tmp"))
        {
            File.Delete(temp);
        }

        return result;
    }

    private void SyncDirectory()
    {
        // A rename or unlink is durable only once the directory is synced; .NET opens no directory
        // as a file, so open(2) and fsync(2) directly.
        var fd = Open(Directory, ORdOnly | ODirectory | OCloexec);
        if (fd < 0)
        {
            throw new IOException($"cannot open {Directory} to sync it: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw new IOException($"fsync of {Directory} failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    private const int ORdOnly = 0;
    private const int ODirectory = 0x10000;
    private const int OCloexec = 0x80000;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    private static string Safe(string key)
    {
        var builder = new StringBuilder(key.Length);
        foreach (var c in key)
        {
            builder.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '.' ? c : '_');
        }

        var text = builder.ToString().Trim('_');
        return text.Length > 100 ? text[^100..] : text;
    }
}

/// <summary>
/// One change a quiesce made outside the agent, with what it takes to undo it. Kind "postfix-qmgr":
/// the queue manager of the Postfix of <see cref="PostfixConfig"/> was stopped (SIGSTOP), the
/// processes in <see cref="Stopped"/>. Kind "postfix" (written by agents before the hold stopped the
/// queue manager; still undone): <see cref="PostfixConfig"/>'s defer_transports was set to
/// <see cref="Held"/>; it was <see cref="Original"/> (null: not set in main.cf). Kind "freeze": the file system at
/// <see cref="MountPath"/> (mount <see cref="MountId"/> of <see cref="BootId"/>) was frozen.
/// Kind "script": the PRE hook of script entry <see cref="Script"/> ran, its POST is owed.
/// </summary>
public sealed record QuiesceJournalEntry(
    int Version,
    string Kind,
    DateTimeOffset WrittenAt,
    int AgentPid,
    string BootId,
    string? PostfixConfig = null,
    string? Held = null,
    string? Original = null,
    string? MountPath = null,
    string? MountId = null,
    string? Script = null,
    IReadOnlyList<string>? Volumes = null,
    IReadOnlyList<StoppedProcess>? Stopped = null)
{
    public const int CurrentVersion = 1;
    public const string Postfix = "postfix";
    public const string QueueManager = "postfix-qmgr";
    public const string Freeze = "freeze";
    public const string ScriptKind = "script";

    public static QuiesceJournalEntry Create(string kind) =>
        new(CurrentVersion, kind, DateTimeOffset.UtcNow, Environment.ProcessId, QuiesceJournal.BootId());
}

/// <summary>A process a quiesce stopped, known by pid, name (COMM) and start time (/proc/PID/stat field 22), so that a later run continues only that process.</summary>
public sealed record StoppedProcess(int Pid, string Command, string StartTime);
