using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Events;

namespace Tidemark.Server.Api;

/// <summary>
/// Recoveries run on a recovery host (ADR 0012), not in the server; when one ends it reports here,
/// and the server records what it did as a <c>recovery.mail</c> event (who, which snapshot, which
/// messages, where to) in the same hash-chained log as every other change.
/// </summary>
public static class RecoveryEndpoints
{
    public static void MapRecoveryApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/api/v1/volumes/{volume}/snapshots/{snapshot}/recoveries/mail", (HttpContext c, Pool p, EventLog events, string volume, string snapshot, RecoveryReportDto report) =>
        {
            var address = $"{volume}@{snapshot}";
            p.GetSnapshot(address); // 404 for a snapshot that does not exist: nothing was recovered from it

            // JSON may leave out what the record calls non-null.
            report = report with { Destination = report.Destination ?? "unknown", Messages = report.Messages ?? [] };
            Check(report);
            var actor = (string)c.Items[AuditMiddleware.ActorItem]!;
            var recorded = events.Record("recovery.mail", address, actor, Message(report), report.Error is null && report.Failed == 0 ? "ok" : "failed", c.Connection.RemoteIpAddress?.ToString());
            return TypedResults.Ok(recorded);
        }).WithTags("recoveries").WithName("recovery.report");
    }

    internal static string Message(RecoveryReportDto report)
    {
        var summary = $"mail recovery to {report.Destination}: {report.Matched} matched, {report.Restored} restored, {report.Duplicates} already there, {report.Failed} failed";
        if (report.Error is { } error)
        {
            summary += $"; failed: {error}";
        }

        return report.Messages.Count == 0 ? summary : $"{summary}; {string.Join("; ", report.Messages)}";
    }

    private static void Check(RecoveryReportDto report)
    {
        if (report.Matched < 0 || report.Restored < 0 || report.Duplicates < 0 || report.Failed < 0)
        {
            throw new StorageException(StorageError.InvalidArgument, "recovery counts cannot be negative");
        }

        if (report.Messages.Count > RecoveryReportDto.MaxMessages)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a recovery report lists at most {RecoveryReportDto.MaxMessages} messages, not {report.Messages.Count}; summarize the rest");
        }

        foreach (var text in report.Messages.Append(report.Destination).Append(report.Error ?? string.Empty))
        {
            if (text.Length > RecoveryReportDto.MaxTextLength || text.Any(char.IsControl))
            {
                throw new StorageException(StorageError.InvalidArgument, $"each text of a recovery report is one line of at most {RecoveryReportDto.MaxTextLength} characters");
            }
        }
    }
}
