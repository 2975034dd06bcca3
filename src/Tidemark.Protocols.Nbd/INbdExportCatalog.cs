using System.Diagnostics.CodeAnalysis;

namespace Tidemark.Protocols.Nbd;

/// <summary>What the NBD server may expose; consulted on every option, so changes apply to new sessions at once.</summary>
public interface INbdExportCatalog
{
    /// <summary>Finds an export by the name a client sent; "" is the default export (proto.md NBD_OPT_EXPORT_NAME).</summary>
    bool TryGet(string name, [NotNullWhen(true)] out NbdExport? export);

    /// <summary>A snapshot of the exports for NBD_OPT_LIST.</summary>
    IReadOnlyList<NbdExport> List();
}
