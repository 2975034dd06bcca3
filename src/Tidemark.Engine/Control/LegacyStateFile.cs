using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace Tidemark.Engine.Control;

/// <summary>
/// Moves a JSON state file of an older version into the pool's control store (ADR 0011): read the
/// file, write its records in one atomic batch, then rename it to NAME.migrated, which is never read
/// again. A crash between the two imports the same file again at the next start: the same records.
/// </summary>
public static class LegacyStateFile
{
    public const string MigratedSuffix = ".migrated";

    /// <summary>
    /// Imports <paramref name="path"/> when it exists: <paramref name="parse"/> turns its text into
    /// the records of <paramref name="kind"/>, which replace those in the store. Returns how many
    /// records it imported (null: no file). A file that does not parse is left where it is and the
    /// error names it and what to do.
    /// </summary>
    public static int? Migrate<T>(ControlStore control, ControlKind<T> kind, string path, Func<string, IEnumerable<KeyValuePair<string, T>>> parse, ILogger logger)
        where T : class
    {
        if (!File.Exists(path))
        {
            return null;
        }

        List<KeyValuePair<string, T>> records;
        try
        {
            records = [.. parse(File.ReadAllText(path))];
        }
        catch (JsonException ex)
        {
            throw new InvalidDataException($"{path} (from an older Tidemark) is damaged ({ex.Message}); fix it, or move it away to start without its {kind.Name} records, then restart", ex);
        }

        control.ReplaceAll(kind, records);
        File.Move(path, path + MigratedSuffix, overwrite: true);
        ControlLog.LegacyFileMigrated(logger, records.Count, kind.Name, path, path + MigratedSuffix);
        return records.Count;
    }
}
