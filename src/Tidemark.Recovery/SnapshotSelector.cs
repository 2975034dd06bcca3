using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Recovery;

/// <summary>Turns VOLUME@SNAPSHOT, or VOLUME with a date, into the snapshot to recover from.</summary>
public static class SnapshotSelector
{
    private static readonly string[] _dateFormats = ["yyyy-MM-dd", "yyyy-MM-ddTHH:mm", "yyyy-MM-ddTHH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd HH:mm:ss"];

    public static async Task<SnapshotDto> SelectAsync(TidemarkClient client, string source, DateTimeOffset? before, CancellationToken ct)
    {
        var at = source.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            if (before is not null)
            {
                throw new RecoveryException(RecoveryFailure.BadInput, $"give either VOLUME@SNAPSHOT or VOLUME --before DATE, not both ('{source}' names a snapshot)");
            }

            if (at == 0 || at == source.Length - 1)
            {
                throw new RecoveryException(RecoveryFailure.BadInput, $"'{source}' is not a snapshot address; write it as VOLUME@SNAPSHOT");
            }

            return await client.GetSnapshotAsync(source, ct);
        }

        if (before is null)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"'{source}' is a volume: add --before DATE to use its newest snapshot taken before DATE, or name a snapshot as {source}@SNAPSHOT");
        }

        var snapshots = await client.ListSnapshotsAsync(source, ct);
        return Newest(snapshots, before.Value)
            ?? throw new RecoveryException(RecoveryFailure.Refused, $"volume {source} has no snapshot taken before {before.Value:yyyy-MM-dd HH:mm:ss zzz} ({snapshots.Count} snapshots; 'tidemark snapshot list {source}' shows them)");
    }

    internal static SnapshotDto? Newest(IEnumerable<SnapshotDto> snapshots, DateTimeOffset before) =>
        snapshots.Where(s => s.CreatedAt < before).MaxBy(s => s.CreatedAt);

    /// <summary>
    /// A date as an operator types it: ISO 8601 with or without a time and offset; without an offset it
    /// is this host's local time (what `date` shows the operator).
    /// </summary>
    public static DateTimeOffset ParseDate(string text, string what)
    {
        if (DateTimeOffset.TryParseExact(text, _dateFormats, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal | DateTimeStyles.AllowWhiteSpaces, out var exact))
        {
            return exact;
        }

        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var parsed) && text.Contains('-', StringComparison.Ordinal))
        {
            return parsed;
        }

        throw new RecoveryException(RecoveryFailure.BadInput, $"{what} '{text}' is not a date; write it like 2026-10-22, 2026-10-22T14:30 or 2026-10-22T14:30:00+01:00");
    }
}
