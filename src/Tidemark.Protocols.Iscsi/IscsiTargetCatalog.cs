using System.Collections.Frozen;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

/// <summary>CHAP secret pair (RFC 7143 12.1.3). Secrets should be at least 12 bytes (RFC 7143 9.2.1).</summary>
public sealed record IscsiChapCredentials(string UserName, string Secret);

/// <summary>One LUN of a target: the device behind it and whether writes are refused.</summary>
public sealed record IscsiLunDefinition(int Lun, IBlockDevice Device, bool ReadOnly = false);

/// <summary>
/// What an administrator configures for one target. <see cref="AllowedInitiators"/> null admits any
/// initiator; otherwise only the listed IQNs see the target in discovery and may log in.
/// <see cref="Chap"/> makes initiators authenticate; <see cref="MutualChap"/> additionally makes the
/// target authenticate itself to the initiator.
/// </summary>
public sealed record IscsiTargetDefinition(string Name, IReadOnlyList<IscsiLunDefinition> Luns)
{
    public IReadOnlyCollection<string>? AllowedInitiators { get; init; }

    public IscsiChapCredentials? Chap { get; init; }

    public IscsiChapCredentials? MutualChap { get; init; }

    public string? Alias { get; init; }
}

/// <summary>A live target: its definition and one <see cref="ScsiLogicalUnit"/> per LUN (shared by all sessions).</summary>
public sealed class IscsiTarget
{
    internal IscsiTarget(IscsiTargetDefinition definition, FrozenDictionary<int, ScsiLogicalUnit> units)
    {
        Definition = definition;
        Units = units;
        LunNumbers = [.. units.Keys.Order()];
    }

    public string Name => Definition.Name;

    public IscsiTargetDefinition Definition { get; }

    public FrozenDictionary<int, ScsiLogicalUnit> Units { get; }

    internal int[] LunNumbers { get; }

    public bool IsAllowed(string initiatorName) =>
        Definition.AllowedInitiators is null
        || Definition.AllowedInitiators.Contains(initiatorName, StringComparer.OrdinalIgnoreCase);
}

/// <summary>
/// The targets this server exports, changeable at run time and safe to read from every connection
/// at once: readers see an immutable snapshot, writers replace it under a lock. Updating a target
/// keeps the logical unit objects of unchanged LUNs, so reservations and unit attentions survive.
/// Sessions already logged in keep the target object they logged in to.
/// </summary>
public sealed class IscsiTargetCatalog : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ScsiLogicalUnitOptions _unitOptions;

    /// <summary>ROD tokens of every unit of this server: POPULATE TOKEN on one LUN, WRITE USING TOKEN on another.</summary>
    private readonly RodTokenStore _rodTokens = new();
    private FrozenDictionary<string, IscsiTarget> _targets = FrozenDictionary<string, IscsiTarget>.Empty;
    private int _nextTsih;

    public IscsiTargetCatalog(ScsiLogicalUnitOptions? unitOptions = null)
    {
        _unitOptions = unitOptions ?? new ScsiLogicalUnitOptions();
    }

    public IReadOnlyCollection<IscsiTarget> Targets => Volatile.Read(ref _targets).Values;

    public IscsiTarget AddOrUpdate(IscsiTargetDefinition definition)
    {
        ArgumentNullException.ThrowIfNull(definition);
        if (!IscsiName.IsValid(definition.Name))
        {
            throw new ArgumentException($"'{definition.Name}' is not a valid iSCSI name (iqn.YYYY-MM.reverse.domain[:id], eui. or naa.)", nameof(definition));
        }

        foreach (var lun in definition.Luns)
        {
            if (lun.Lun is < 0 or > ScsiTargetCommands.MaxLun)
            {
                throw new ArgumentException($"LUN {lun.Lun} is outside 0-{ScsiTargetCommands.MaxLun}", nameof(definition));
            }
        }

        lock (_lock)
        {
            var old = _targets.GetValueOrDefault(definition.Name);
            var units = new Dictionary<int, ScsiLogicalUnit>();
            foreach (var lun in definition.Luns)
            {
                if (units.ContainsKey(lun.Lun))
                {
                    throw new ArgumentException($"LUN {lun.Lun} is defined twice", nameof(definition));
                }

                var previous = old?.Definition.Luns.FirstOrDefault(l => l.Lun == lun.Lun);
                units[lun.Lun] = previous is not null && ReferenceEquals(previous.Device, lun.Device) && previous.ReadOnly == lun.ReadOnly
                    ? old!.Units[lun.Lun]
                    : new ScsiLogicalUnit(lun.Device, lun.ReadOnly, _unitOptions) { CopyScope = new CopyScope(this, definition.Name) };
            }

            var target = new IscsiTarget(definition, units.ToFrozenDictionary());
            var next = new Dictionary<string, IscsiTarget>(_targets, StringComparer.OrdinalIgnoreCase) { [definition.Name] = target };
            Volatile.Write(ref _targets, next.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase));
            DisposeUnused(old, target);
            return target;
        }
    }

    public bool Remove(string name)
    {
        lock (_lock)
        {
            if (!_targets.TryGetValue(name, out var old))
            {
                return false;
            }

            var next = new Dictionary<string, IscsiTarget>(_targets, StringComparer.OrdinalIgnoreCase);
            next.Remove(name);
            Volatile.Write(ref _targets, next.ToFrozenDictionary(StringComparer.OrdinalIgnoreCase));
            DisposeUnused(old, null);
            return true;
        }
    }

    public bool TryGetTarget(string name, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out IscsiTarget? target) =>
        Volatile.Read(ref _targets).TryGetValue(name, out target);

    /// <summary>Targets an initiator may see in SendTargets discovery (RFC 7143 Appendix C).</summary>
    public IEnumerable<IscsiTarget> VisibleTo(string initiatorName) =>
        Volatile.Read(ref _targets).Values.Where(t => t.IsAllowed(initiatorName)).OrderBy(t => t.Name, StringComparer.Ordinal);

    /// <summary>RFC 7143 11.12.6: a non-zero target-chosen session handle.</summary>
    internal ushort NextTsih()
    {
        while (true)
        {
            var tsih = (ushort)Interlocked.Increment(ref _nextTsih);
            if (tsih != 0)
            {
                return tsih;
            }
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var target in _targets.Values)
            {
                DisposeUnused(target, null);
            }

            _targets = FrozenDictionary<string, IscsiTarget>.Empty;
        }
    }

    /// <summary>
    /// Copy offload reaches the LUNs of the unit's own target, and of any other target the same
    /// initiator could log in to with what it already presented: the target admits its name and asks
    /// for no CHAP, or for the same CHAP credentials. So EXTENDED COPY never reads or writes a unit
    /// the initiator could not use directly, whatever designator it sends.
    /// </summary>
    private sealed class CopyScope(IscsiTargetCatalog catalog, string targetName) : IScsiCopyScope
    {
        public RodTokenStore Tokens => catalog._rodTokens;

        public IEnumerable<ScsiLogicalUnit> CopyTargets(string initiatorPort)
        {
            // The port is "initiator name,i,0xISID" (SPC-4 7.6.4.6, as IscsiConnection builds it).
            var comma = initiatorPort.IndexOf(",i,", StringComparison.Ordinal);
            var initiator = comma < 0 ? initiatorPort : initiatorPort[..comma];
            var targets = Volatile.Read(ref catalog._targets);
            if (!targets.TryGetValue(targetName, out var own))
            {
                return [];
            }

            return targets.Values
                .Where(t => t == own || (t.IsAllowed(initiator) && (t.Definition.Chap is null || Equals(t.Definition.Chap, own.Definition.Chap))))
                .SelectMany(t => t.Units.Values);
        }
    }

    private static void DisposeUnused(IscsiTarget? old, IscsiTarget? current)
    {
        if (old is null)
        {
            return;
        }

        foreach (var unit in old.Units.Values)
        {
            if (current is null || !current.Units.Values.Contains(unit))
            {
                unit.Dispose();
            }
        }
    }
}
