using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server;

/// <summary>
/// Exports of volumes, views and snapshots, kept in DATA/exports.json (rewritten atomically on every
/// change) and published to the NBD catalogue. An export whose target is missing at start stays
/// listed as offline with the reason, so nothing an administrator set up disappears silently.
/// </summary>
public sealed class ExportRegistry
{
    public const string Nbd = "nbd";
    private const int MaxNameLength = 255;

    private readonly Pool _pool;
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);

    public ExportRegistry(Pool pool, string path, ILogger logger)
    {
        _pool = pool;
        _path = path;
        _logger = logger;
    }

    public NbdExportCatalog Catalog { get; } = new();

    /// <summary>The NBD address clients connect to ("127.0.0.1:10809"), for export URLs; null when NBD is off.</summary>
    public string? NbdAddress { get; set; }

    /// <summary>Loads DATA/exports.json and brings every export whose target exists online.</summary>
    public void Load()
    {
        if (!File.Exists(_path))
        {
            return;
        }

        List<ExportRecord> records;
        try
        {
            records = JsonSerializer.Deserialize<List<ExportRecord>>(File.ReadAllText(_path), ServerSettings.FileJson) ?? [];
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{_path} is damaged ({ex.Message}); fix or remove it, then recreate the exports", ex);
        }

        lock (_lock)
        {
            foreach (var record in records)
            {
                var entry = new Entry(record);
                try
                {
                    Publish(entry);
                }
                catch (StorageException ex)
                {
                    entry.Problem = ex.Message;
                    _logger.LogWarning("export {Export} of {Target} is offline: {Problem}", record.Name, record.Target, ex.Message);
                }

                _entries[record.Name] = entry;
            }
        }
    }

    public IReadOnlyList<ExportDto> List()
    {
        lock (_lock)
        {
            return [.. _entries.Values.Select(ToDto)];
        }
    }

    public ExportDto Create(CreateExportRequest request)
    {
        var protocol = (request.Protocol ?? Nbd).ToLowerInvariant();
        if (protocol != Nbd)
        {
            throw new StorageException(StorageError.Unsupported, $"protocol '{request.Protocol}' is not served yet; use nbd");
        }

        if (string.IsNullOrWhiteSpace(request.Target))
        {
            throw new StorageException(StorageError.InvalidArgument, "an export needs a target: a volume, a view or VOLUME@SNAPSHOT");
        }

        var name = string.IsNullOrEmpty(request.Name) ? request.Target : request.Name;
        CheckName(name);
        var isSnapshot = request.Target.Contains('@', StringComparison.Ordinal);
        var record = new ExportRecord(name, protocol, request.Target, request.ReadOnly || isSnapshot);
        lock (_lock)
        {
            if (_entries.ContainsKey(name))
            {
                throw new StorageException(StorageError.AlreadyExists, $"an export named '{name}' exists; remove it first or choose another name with --name");
            }

            var entry = new Entry(record);
            Publish(entry);
            _entries[name] = entry;
            try
            {
                SaveLocked();
            }
            catch
            {
                _entries.Remove(name);
                Catalog.Remove(name);
                throw;
            }

            _logger.LogInformation("exported {Target} over {Protocol} as {Export}{Mode}", record.Target, protocol, name, record.ReadOnly ? " (read-only)" : string.Empty);
            return ToDto(entry);
        }
    }

    public void Delete(string name)
    {
        lock (_lock)
        {
            if (!_entries.Remove(name, out var entry))
            {
                throw new StorageException(StorageError.NotFound, $"no export named '{name}'; 'tidemark export list' shows them");
            }

            Catalog.Remove(name);
            try
            {
                SaveLocked();
            }
            catch
            {
                _entries[name] = entry;
                if (entry.Problem is null)
                {
                    Publish(entry);
                }

                throw;
            }

            _logger.LogInformation("removed export {Export} of {Target}", name, entry.Record.Target);
        }
    }

    /// <summary>Names of the exports of a volume itself and of its snapshots.</summary>
    public IReadOnlyList<string> ExportsOfVolume(string volume)
    {
        lock (_lock)
        {
            return [.. _entries.Values
                .Where(e => e.Record.Target == volume || e.Record.Target.StartsWith(volume + "@", StringComparison.Ordinal))
                .Select(e => e.Record.Name)];
        }
    }

    public IReadOnlyList<string> ExportsOfTarget(string target)
    {
        lock (_lock)
        {
            return [.. _entries.Values.Where(e => e.Record.Target == target).Select(e => e.Record.Name)];
        }
    }

    /// <summary>Refuses to delete what is exported: a client would lose its disk under it.</summary>
    public void ThrowIfExported(IReadOnlyList<string> exports, string what)
    {
        if (exports.Count > 0)
        {
            throw new StorageException(
                StorageError.Busy,
                $"{what} is exported as {string.Join(", ", exports)}; remove the export first ('tidemark export remove {exports[0]}')");
        }
    }

    private void Publish(Entry entry)
    {
        var record = entry.Record;
        IBlockDevice device = record.Target.Contains('@', StringComparison.Ordinal)
            ? _pool.OpenSnapshot(record.Target)
            : _pool.GetVolume(record.Target);
        var description = device switch
        {
            Volume { Kind: VolumeKind.View } => $"view {record.Target}",
            Volume => $"volume {record.Target}",
            _ => $"snapshot {record.Target}",
        };
        Catalog.Set(new NbdExport(record.Name, device, description, record.ReadOnly));
        entry.Problem = null;
    }

    private void SaveLocked() =>
        AtomicFile.WriteAllText(_path, JsonSerializer.Serialize(_entries.Values.Select(e => e.Record).ToList(), ServerSettings.FileJson) + "\n");

    private ExportDto ToDto(Entry entry)
    {
        var r = entry.Record;
        // RFC 3986 allows '@' and ':' in a path segment; nbd URIs (libnbd) take the export name from the path.
        var path = Uri.EscapeDataString(r.Name).Replace("%40", "@", StringComparison.Ordinal).Replace("%3A", ":", StringComparison.Ordinal);
        var url = NbdAddress is null ? null : $"nbd://{NbdAddress}/{path}";
        return new ExportDto(r.Name, r.Protocol, r.Target, r.ReadOnly, entry.Problem is null ? "online" : "offline", entry.Problem, url);
    }

    private static void CheckName(string name)
    {
        var ok = name.Length is > 0 and <= MaxNameLength
            && char.IsAsciiLetterOrDigit(name[0])
            && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' or '@' or ':');
        if (!ok)
        {
            throw new StorageException(
                StorageError.InvalidName,
                $"'{name}' is not a valid export name: use 1-{MaxNameLength} letters, digits, '-', '_', '.', '@' or ':', starting with a letter or digit");
        }
    }

    /// <summary>One line of DATA/exports.json. Field names are persisted: never rename them.</summary>
    public sealed record ExportRecord(string Name, string Protocol, string Target, bool ReadOnly);

    private sealed class Entry(ExportRecord record)
    {
        public ExportRecord Record { get; } = record;

        public string? Problem { get; set; }
    }
}
