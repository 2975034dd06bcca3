using System.CommandLine;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

public static class EventCommands
{
    public static Command Create()
    {
        var kind = new Option<string?>("--kind") { Description = "only this kind, or a family: 'snapshot' matches snapshot.create and snapshot.delete" };
        var subject = new Option<string?>("--subject") { Description = "only events about this volume, VOLUME@SNAPSHOT, export or policy" };
        var since = new Option<DateTimeOffset?>("--since") { Description = "only events at or after this time (ISO 8601, e.g. 2026-11-24T08:00Z)" };
        var after = new Option<long?>("--after") { Description = "only events after this sequence number (paging forward through one log: the main log, or the refused log with --log refused)" };
        var log = new Option<string?>("--log") { Description = "only one log: 'main' (real history) or 'refused' (refused requests, rotated sooner); default both, in time order" };
        var limit = new Option<int?>("--limit") { Description = "at most this many (default 100; without --after the newest ones)" };
        var follow = new Option<bool>("--follow", "-f") { Description = "keep printing new events as they happen, until Ctrl-C (with --json: one JSON object per line)" };
        var list = new Command("list", "Show the event and audit log: every change, who made it and when") { kind, subject, since, after, limit, follow, log };
        list.SetClientAction(async (p, client, json, ct) =>
        {
            var events = await client.ListEventsAsync(p.GetValue(after), p.GetValue(kind), p.GetValue(subject), p.GetValue(since), p.GetValue(limit), p.GetValue(log), ct);
            if (json && !p.GetValue(follow))
            {
                Output.Json(events); // one array, like every other list
                return;
            }

            Print(events, json, header: true);
            if (!p.GetValue(follow))
            {
                return;
            }

            // Sequence numbers count per log: follow the one asked for (the main log unless --log refused).
            var followed = p.GetValue(log) ?? "main";
            var seen = events.LastOrDefault(e => (e.Log ?? "main") == followed);
            var last = seen?.Sequence ?? p.GetValue(after) ?? 0;
            if (seen is null && p.GetValue(after) is null)
            {
                // Nothing matched yet: follow from the newest event of any kind.
                var newest = await client.ListEventsAsync(limit: 1, ct: ct, log: followed);
                last = newest.Count > 0 ? newest[0].Sequence : 0;
            }

            try
            {
                while (!ct.IsCancellationRequested)
                {
                    await Task.Delay(TimeSpan.FromSeconds(1), ct);
                    var more = await client.ListEventsAsync(last, p.GetValue(kind), p.GetValue(subject), p.GetValue(since), 1000, followed, ct);
                    if (more.Count > 0)
                    {
                        Print(more, json, header: false);
                        last = more[^1].Sequence;
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                // Ctrl-C ends following; what was printed stands.
            }
        });

        var verify = new Command("verify", "Check the audit log's hash chain: every record links to the one before; says where it breaks (exit 1)");
        verify.SetClientAction(async (_, client, json, ct) =>
        {
            var result = await client.VerifyEventsAsync(ct);
            if (json)
            {
                Output.Json(result);
            }
            else if (result.Ok)
            {
                Console.Out.WriteLine(Summary("the audit log", result));
                if (result.Refused is { } refused)
                {
                    Console.Out.WriteLine(Summary("the refused-requests log", refused));
                }
            }
            else
            {
                Output.Table(["LOG", "FILE", "LINE", "SEQ", "PROBLEM"], result.Problems.Select(p => (IReadOnlyList<string>)[p.Log ?? "main", p.File, p.Line.ToString(System.Globalization.CultureInfo.InvariantCulture), p.Sequence?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "-", p.Problem]));
            }

            if (!result.Ok)
            {
                var first = result.Problems[0];
                var logs = string.Join(" and ", result.Problems.Select(p => p.Log ?? "main").Distinct().Select(l => l == "refused" ? "the refused-requests log" : "the audit log"));
                throw new TidemarkApiException(System.Net.HttpStatusCode.Conflict, "audit-chain-broken", $"the chain of {logs} breaks {result.Problems.Count} time(s), first in {first.File} line {first.Line}: {first.Problem}");
            }
        });

        return new Command("event", "The event and audit log") { list, verify };
    }

    private static string Summary(string name, EventVerifyDto result) => result.Checked == 0
        ? $"{name} is empty"
        : $"{name} is intact: {result.Checked} records, sequence {result.FirstSequence} to {result.LastSequence} (older ones were rotated out)";

    /// <summary>With --follow, --json prints one JSON object per line: an array would never end.</summary>
    private static void Print(IReadOnlyList<EventDto> events, bool json, bool header)
    {
        if (json)
        {
            foreach (var e in events)
            {
                Output.JsonLine(e);
            }

            return;
        }

        // Sequence numbers count per log: a refused-log record shows as "r123".
        var rows = events.Select(e => (IReadOnlyList<string>)[(e.Log == "refused" ? "r" : "") + e.Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture), Output.Time(e.Time), e.Kind, e.Subject ?? "-", e.Actor, e.Outcome, e.Message]);
        if (header)
        {
            Output.Table(["SEQ", "TIME", "KIND", "SUBJECT", "ACTOR", "OUTCOME", "MESSAGE"], rows);
        }
        else
        {
            foreach (var row in rows)
            {
                Console.Out.WriteLine(string.Join("  ", row));
            }
        }
    }
}
