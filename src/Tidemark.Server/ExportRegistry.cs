using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Engine.Control;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Nbd;
using Tidemark.Server.Metrics;

namespace Tidemark.Server;

/// <summary>
/// Exports of volumes, views and snapshots, kept as control records in the pool (<see cref="Kind"/>,
/// saved atomically on every change; they hold CHAP secrets, and the pool is the owner's only) and published to the NBD catalogue or, for iSCSI,
/// to the iSCSI target catalogue (one target per export, one LUN per volume, view or snapshot). An
/// export whose target is missing at start stays listed as offline with the reason, so nothing an
/// administrator set up disappears silently. Removing an export stops new logins and connections;
/// sessions already logged in keep their device until they disconnect.
/// </summary>
public sealed partial class ExportRegistry
{
    public const string Nbd = "nbd";
    public const string Iscsi = "iscsi";
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite;

    private readonly Pool _pool;
    private readonly IoMetrics? _metrics;
    private readonly string _path;
    private readonly ILogger _logger;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly ConditionalWeakTable<IBlockDevice, string> _servedTargets = new();

    /// <summary>Exports as control records in the pool (ADR 0011), named by export name. Version 1: <see cref="ExportRecord"/>.</summary>
    public static readonly ControlKind<ExportRecord> Kind = new("export", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });

    /// <param name="path">DATA/exports.json of an older version: imported into the pool at <see cref="Load"/>, then renamed.</param>
    public ExportRegistry(Pool pool, string path, ILogger logger, IoMetrics? metrics = null)
    {
        _metrics = metrics;
        _pool = pool;
        _path = path;
        _logger = logger;
    }

    public NbdExportCatalog Catalog { get; } = new();

    public IscsiTargetCatalog IscsiCatalog { get; } = new();

    /// <summary>The iSCSI portal initiators connect to ("127.0.0.1:3260"), for export URLs; null when iSCSI is off.</summary>
    public string? IscsiAddress { get; set; }

    /// <summary>The NBD address clients connect to ("127.0.0.1:10809"), for export URLs; null when NBD is off.</summary>
    public string? NbdAddress { get; set; }

    /// <summary>The NBD Unix-domain socket, when the server listens on one; exports then also show a local URL.</summary>
    public string? NbdSocket { get; set; }

    /// <summary>
    /// Loads the exports from the pool (first importing DATA/exports.json of an older version) and brings
    /// every export whose target exists online. A read-write export
    /// of a volume that must not be written (a replica, see <see cref="WhyReadOnly"/>; made before that
    /// rule existed) comes up read-only and stays so; returns one notice per such export,
    /// naming it and saying what to do, for the event log.
    /// </summary>
    public IReadOnlyList<(string Export, string Message)> Load()
    {
        var notices = new List<(string Export, string Message)>();

        // Written by an older version with the default mode: it holds CHAP secrets (kept so as NAME.migrated).
        if (File.Exists(_path) && !OperatingSystem.IsWindows() && (File.GetUnixFileMode(_path) & ~OwnerOnly) != 0)
        {
            File.SetUnixFileMode(_path, OwnerOnly);
        }

        LegacyStateFile.Migrate(
            _pool.Control,
            Kind,
            _path,
            text => (JsonSerializer.Deserialize<List<ExportRecord>>(text, ServerSettings.FileJson) ?? []).Select(r => new KeyValuePair<string, ExportRecord>(r.Name, r)),
            _logger);
        var records = _pool.Control.List(Kind).Select(e => e.Value).ToList();

        lock (_lock)
        {
            foreach (var loaded in records)
            {
                var record = loaded;
                if (WhyNotWritable(record) is { } why)
                {
                    // Served read-write, a replica's writes would land in a replicated snapshot or be
                    // discarded by the next sync; read-only keeps DR tests through it working.
                    record = record with { ReadOnly = true };
                    var message = $"export {record.Name} was read-write, it is served read-only now: {why}; after 'tidemark replica promote', remove it and create it again without --read-only to write through it";
                    ServerLog.ExportNotice(_logger, message);
                    notices.Add((record.Name, message));
                }

                var entry = new Entry(record);
                try
                {
                    Publish(entry);
                }
                catch (StorageException ex)
                {
                    entry.Problem = ex.Message;
                    ServerLog.ExportOffline(_logger, record.Name, record.Target, ex.Message);
                }

                _entries[record.Name] = entry;
            }

            if (notices.Count > 0)
            {
                try
                {
                    SaveLocked();
                }
                catch (StorageException ex)
                {
                    // The exports are served read-only anyway; the next start downgrades them again.
                    ServerLog.ReadOnlyExportsNotRecorded(_logger, ex.Message);
                }
            }
        }

        return notices;
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
        if (string.IsNullOrWhiteSpace(request.Target))
        {
            throw new StorageException(StorageError.InvalidArgument, "an export needs a target: a volume, a view or VOLUME@SNAPSHOT");
        }

        var name = string.IsNullOrEmpty(request.Name) ? request.Target : request.Name;
        CheckName(name);
        var record = protocol switch
        {
            Nbd => NbdRecord(name, request),
            Iscsi => IscsiRecord(name, request),
            _ => throw new StorageException(StorageError.Unsupported, $"protocol '{request.Protocol}' is not served; use nbd or iscsi"),
        };
        CheckWritable(record);
        lock (_lock)
        {
            if (_entries.ContainsKey(name))
            {
                throw new StorageException(StorageError.AlreadyExists, $"an export named '{name}' exists; remove it first or choose another name with --name");
            }

            if (record.Iqn is { } iqn && _entries.Values.FirstOrDefault(e => string.Equals(e.Record.Iqn, iqn, StringComparison.OrdinalIgnoreCase)) is { } other)
            {
                throw new StorageException(StorageError.AlreadyExists, $"export '{other.Record.Name}' already serves the iSCSI target {iqn}; choose another with --iqn");
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
                Unpublish(record);
                throw;
            }

            ServerLog.Exported(_logger, string.Join(", ", record.AllTargets), protocol, name, record.ReadOnly ? " (read-only)" : string.Empty);
            return ToDto(entry);
        }
    }

    /// <summary>
    /// Why a volume must not be exported read-write (a replica before promotion), or null. Checked
    /// when an export is created; read-only exports and snapshots stay allowed.
    /// </summary>
    public Func<string, string?> WhyReadOnly { get; set; } = _ => null;

    private void CheckWritable(ExportRecord record)
    {
        if (WhyNotWritable(record) is { } why)
        {
            throw new StorageException(StorageError.ReadOnly, $"a read-write export of {why}");
        }
    }

    /// <summary>"TARGET is refused: WHY" for the first target that must not be written through this export, or null.</summary>
    private string? WhyNotWritable(ExportRecord record)
    {
        if (record.ReadOnly)
        {
            return null;
        }

        foreach (var target in record.AllTargets.Where(t => !IsSnapshot(t)))
        {
            if (WhyReadOnly(target) is { } why)
            {
                return $"{target} is refused: {why}";
            }
        }

        return null;
    }

    /// <summary>True when the NBD listener can upgrade clients with STARTTLS (the server has a TLS certificate).</summary>
    public bool TlsAvailable { get; set; }

    private ExportRecord NbdRecord(string name, CreateExportRequest request)
    {
        if (request.TlsRequired && !TlsAvailable)
        {
            throw new StorageException(StorageError.Unsupported, "this server has no TLS certificate, so no NBD client could use a TLS-only export; start it with --tls-cert (a PEM file or self-signed)");
        }

        if (request.AdditionalTargets is { Count: > 0 } || request.Iqn is not null || request.AllowedInitiators is { Count: > 0 }
            || request.ChapUser is not null || request.ChapSecret is not null || request.MutualChapUser is not null || request.MutualChapSecret is not null)
        {
            throw new StorageException(StorageError.InvalidArgument, "more targets, an IQN, an initiator allow-list and CHAP apply to iSCSI exports only; NBD exports have one target and no access rules");
        }

        return new ExportRecord(name, Nbd, request.Target, request.ReadOnly || IsSnapshot(request.Target)) { TlsRequired = request.TlsRequired };
    }

    public void Delete(string name)
    {
        lock (_lock)
        {
            if (!_entries.Remove(name, out var entry))
            {
                throw new StorageException(StorageError.NotFound, $"no export named '{name}'; 'tidemark export list' shows them");
            }

            Unpublish(entry.Record);
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

            ServerLog.ExportRemoved(_logger, name, entry.Record.Target);
        }
    }

    /// <summary>Names of the exports of a volume itself and of its snapshots.</summary>
    public IReadOnlyList<string> ExportsOfVolume(string volume)
    {
        lock (_lock)
        {
            return [.. _entries.Values
                .Where(e => e.Record.AllTargets.Any(t => t == volume || t.StartsWith(volume + "@", StringComparison.Ordinal)))
                .Select(e => e.Record.Name)];
        }
    }

    /// <summary>Names of the exports through which clients may write the volume itself.</summary>
    public IReadOnlyList<string> WritableExportsOf(string volume)
    {
        lock (_lock)
        {
            return [.. _entries.Values.Where(e => !e.Record.ReadOnly && e.Record.AllTargets.Contains(volume)).Select(e => e.Record.Name)];
        }
    }

    /// <summary>
    /// The URLs through which clients write <paramref name="volumes"/> over NBD (TCP and Unix socket),
    /// for the agents of a snapshot: an agent finds an nbdfuse attachment of the volume by them (ADR 0015).
    /// </summary>
    public IReadOnlyList<VolumeAttachmentDto> AttachmentsOf(IReadOnlyList<string> volumes)
    {
        var result = new List<VolumeAttachmentDto>();
        lock (_lock)
        {
            foreach (var entry in _entries.Values.Where(e => e.Record.Protocol == Nbd && !e.Record.ReadOnly))
            {
                foreach (var volume in volumes.Where(entry.Record.AllTargets.Contains))
                {
                    var dto = ToDto(entry);
                    foreach (var url in new[] { dto.Url, dto.LocalUrl }.OfType<string>())
                    {
                        result.Add(new VolumeAttachmentDto(volume, url));
                    }
                }
            }
        }

        return result;
    }

    public IReadOnlyList<string> ExportsOfTarget(string target)
    {
        lock (_lock)
        {
            return [.. _entries.Values.Where(e => e.Record.AllTargets.Contains(target)).Select(e => e.Record.Name)];
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
        switch (record.Protocol)
        {
            case Nbd:
                var served = ServedImage(record, record.Target);
                var device = Open(served);
                Catalog.Set(new NbdExport(record.Name, Metered(record.Target, device, served), Describe(device, served), record.ReadOnly)
                {
                    ChangedBlocks = new EngineChangedBlocks(_pool, served),
                    TlsRequired = record.TlsRequired,
                });
                entry.Served = [served];
                break;
            case Iscsi:
                entry.Served = PublishIscsi(record);
                break;
            default:
                throw new StorageException(StorageError.Unsupported, $"protocol '{record.Protocol}' is not served by this version");
        }

        entry.Problem = null;
    }

    private void Unpublish(ExportRecord record)
    {
        if (record.Protocol == Iscsi)
        {
            // Only this export's own target: a clash at load may have left another export's in place.
            if (record.Iqn is { } iqn && IscsiCatalog.TryGetTarget(iqn, out var target) && target.Definition.Alias == record.Name)
            {
                IscsiCatalog.Remove(iqn);
            }
        }
        else
        {
            Catalog.Remove(record.Name);
        }
    }

    private IBlockDevice Open(string target) =>
        IsSnapshot(target) ? _pool.OpenSnapshot(target) : _pool.GetVolume(target);

    /// <summary>
    /// For a volume that replication writes (a replica at the DR site, not promoted), the snapshot a
    /// read-only export serves instead of the live image: its newest complete replicated snapshot.
    /// Null for every other volume. See ADR 0008.
    /// </summary>
    public Func<string, string?> StandbyImageOf { get; set; } = _ => null;

    /// <summary>
    /// What a LUN or NBD export of <paramref name="target"/> serves: a read-only export of a replica
    /// serves its newest replicated snapshot, which no commit changes (the live image changes under
    /// every transfer and is torn while one runs); anything else serves the target itself.
    /// </summary>
    private string ServedImage(ExportRecord record, string target) =>
        record.ReadOnly && !IsSnapshot(target) && StandbyImageOf(target) is { } image ? image : target;

    /// <summary>
    /// A replica's newest replicated snapshot changed (a commit), or it stopped or started being a
    /// replica (promote, demote, accept): its read-only exports are published again on the new image.
    /// New NBD connections and iSCSI logins get it; clients already attached keep the snapshot they
    /// have (a stable image, kept from pruning while they hold it) until they reconnect.
    /// </summary>
    public void RefreshStandby(string volume)
    {
        lock (_lock)
        {
            foreach (var entry in _entries.Values.Where(e => e.Record.ReadOnly && e.Record.AllTargets.Contains(volume)))
            {
                if (entry.Problem is null && entry.Served is { } served && served.SequenceEqual(entry.Record.AllTargets.Select(t => ServedImage(entry.Record, t))))
                {
                    continue;
                }

                try
                {
                    Publish(entry);
                    ServerLog.ExportServes(_logger, entry.Record.Name, volume, string.Join(", ", entry.Served ?? []));
                }
                catch (StorageException ex)
                {
                    entry.Problem = ex.Message;
                    ServerLog.ExportOffline(_logger, entry.Record.Name, volume, ex.Message);
                }
            }
        }
    }

    /// <summary>
    /// What the frontends get: the device, counted in the I/O metrics under the export's target and
    /// known (for sessions) as <paramref name="served"/>, the snapshot it is when it is a replica's standby image.
    /// </summary>
    private IBlockDevice Metered(string target, IBlockDevice device, string? served = null)
    {
        var metered = _metrics?.Wrap(target, device) ?? device;
        _servedTargets.AddOrUpdate(metered, served ?? target);
        return metered;
    }

    /// <summary>
    /// The volume, view or VOLUME@SNAPSHOT behind a device a frontend was given, or null. Sessions keep
    /// their device after their export is removed, so this is keyed by the device, not the export.
    /// </summary>
    public string? TargetOf(IBlockDevice device) => _servedTargets.TryGetValue(device, out var target) ? target : null;

    private static string Describe(IBlockDevice device, string target) => device switch
    {
        Volume { Kind: VolumeKind.View } => $"view {target}",
        Volume => $"volume {target}",
        _ => $"snapshot {target}",
    };

    private static bool IsSnapshot(string target) => target.Contains('@', StringComparison.Ordinal);

    private void SaveLocked() =>
        _pool.Control.ReplaceAll(Kind, _entries.Select(e => new KeyValuePair<string, ExportRecord>(e.Key, e.Value.Record)));

    private ExportDto ToDto(Entry entry)
    {
        var r = entry.Record;
        var state = entry.Problem is null ? "online" : "offline";
        if (r.Protocol == Iscsi)
        {
            return IscsiDto(r, state, entry.Problem);
        }

        // RFC 3986 allows '@' and ':' in a path segment; nbd URIs (libnbd) take the export name from the path.
        var path = Uri.EscapeDataString(r.Name).Replace("%40", "@", StringComparison.Ordinal).Replace("%3A", ":", StringComparison.Ordinal);
        var url = NbdAddress is null ? null : $"{(r.TlsRequired ? "nbds" : "nbd")}://{NbdAddress}/{path}";
        var localUrl = NbdSocket is null ? null : $"{(r.TlsRequired ? "nbds+unix" : "nbd+unix")}:///{path}?socket={Uri.EscapeDataString(NbdSocket).Replace("%2F", "/", StringComparison.Ordinal)}";
        return new ExportDto(r.Name, r.Protocol, r.Target, r.ReadOnly, state, entry.Problem, url, TlsRequired: r.TlsRequired, LocalUrl: localUrl);
    }

    internal static void CheckName(string name) => SettingText.CheckExportName(name);

    /// <summary>
    /// One export as persisted (a control record in the pool, formerly a line of DATA/exports.json).
    /// Field names are persisted: never rename them (ExportRecordGoldenTests). NBD exports use the
    /// four positional fields; iSCSI exports add <see cref="Luns"/> (LUN 0, 1, ...; the first equals
    /// <see cref="Target"/>), the IQN, the allow-list and CHAP. <see cref="ReadOnly"/> on an iSCSI export
    /// makes every LUN read-only; snapshot LUNs always are.
    /// </summary>
    public sealed record ExportRecord(string Name, string Protocol, string Target, bool ReadOnly)
    {
        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public IReadOnlyList<string>? Luns { get; init; }

        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public string? Iqn { get; init; }

        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public IReadOnlyList<string>? AllowedInitiators { get; init; }

        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public ChapRecord? Chap { get; init; }

        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)]
        public ChapRecord? MutualChap { get; init; }

        [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
        public bool TlsRequired { get; init; }

        [JsonIgnore]
        public IReadOnlyList<string> AllTargets => Luns is { Count: > 0 } luns ? luns : [Target];
    }

    /// <summary>CHAP user name and secret as persisted (the pool's files are the owner's only for this reason).</summary>
    public sealed record ChapRecord(string User, string Secret);

    private sealed class Entry(ExportRecord record)
    {
        public ExportRecord Record { get; } = record;

        public string? Problem { get; set; }

        /// <summary>What each target (LUN) is served from since it was last published: the target, or a replica's standby snapshot.</summary>
        public IReadOnlyList<string>? Served { get; set; }
    }
}
