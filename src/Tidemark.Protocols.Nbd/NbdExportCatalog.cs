using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;

namespace Tidemark.Protocols.Nbd;

/// <summary>A thread-safe catalogue whose exports are added and removed at run time.</summary>
public sealed class NbdExportCatalog : INbdExportCatalog
{
    private readonly ConcurrentDictionary<string, NbdExport> _exports = new(StringComparer.Ordinal);
    private volatile string? _defaultExportName;

    /// <summary>The export a client gets when it asks for "" (proto.md: the "default" export); null: none.</summary>
    public string? DefaultExportName
    {
        get => _defaultExportName;
        set => _defaultExportName = value;
    }

    /// <summary>Adds an export; false when one with that name exists.</summary>
    public bool TryAdd(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        return _exports.TryAdd(export.Name, export);
    }

    /// <summary>Adds or replaces the export with that name.</summary>
    public void Set(NbdExport export)
    {
        ArgumentNullException.ThrowIfNull(export);
        _exports[export.Name] = export;
    }

    /// <summary>Removes an export; connections already in transmission keep their device.</summary>
    public bool Remove(string name) => _exports.TryRemove(name, out _);

    public bool TryGet(string name, [NotNullWhen(true)] out NbdExport? export)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (_exports.TryGetValue(name, out export))
        {
            return true;
        }

        var fallback = _defaultExportName;
        if (name.Length == 0 && fallback is not null)
        {
            return _exports.TryGetValue(fallback, out export);
        }

        export = null;
        return false;
    }

    public IReadOnlyList<NbdExport> List()
    {
        var list = _exports.Values.ToArray();
        Array.Sort(list, static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }
}
