using System.Globalization;
using System.Text.RegularExpressions;

namespace Tidemark.Common.Tests;

/// <summary>
/// Issue 18 (ADR 0019): every source-generated log line carries an event id from its area's range,
/// so a log pipeline can select lines by id. A source rule: a new [LoggerMessage] without an id, an
/// id used twice or an id outside the ADR's table fails here, naming the file and line.
/// </summary>
public sealed partial class LoggerMessageEventIdTests
{
    [Fact]
    public void EveryLoggerMessage_HasAUniqueEventId_InARangeOfAdr0019()
    {
        var ranges = AdrRanges();
        Assert.NotEmpty(ranges);
        var src = Path.Combine(SourceTree.RepositoryRoot(), "src");
        var problems = new List<string>();
        var seen = new Dictionary<int, string>();
        foreach (var file in SourceTree.SourceFiles())
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                if (!lines[i].Contains("[LoggerMessage(", StringComparison.Ordinal))
                {
                    continue;
                }

                var where = $"{Path.GetRelativePath(src, file)}:{i + 1}";
                var id = EventId().Match(lines[i]);
                if (!id.Success)
                {
                    problems.Add($"{where}: no EventId (give it one from its area's range in docs/adr/0019)");
                    continue;
                }

                var value = int.Parse(id.Groups["id"].Value, CultureInfo.InvariantCulture);
                if (seen.TryGetValue(value, out var first))
                {
                    problems.Add($"{where}: event id {value} is already used at {first}");
                }
                else
                {
                    seen[value] = where;
                }

                if (!ranges.Any(r => value >= r.From && value <= r.To))
                {
                    problems.Add($"{where}: event id {value} is in no range of docs/adr/0019's table");
                }
            }
        }

        Assert.True(seen.Count > 0, "found no [LoggerMessage] in src/: the scan is looking in the wrong place");
        Assert.True(problems.Count == 0, string.Join('\n', problems));
    }

    /// <summary>The "| 1000-1299 | area | class |" rows of ADR 0019's table.</summary>
    private static List<(int From, int To)> AdrRanges()
    {
        var adr = Directory.GetFiles(Path.Combine(SourceTree.RepositoryRoot(), "docs", "adr"), "0019-*.md").Single();
        return File.ReadLines(adr)
            .Select(line => RangeRow().Match(line))
            .Where(m => m.Success)
            .Select(m => (int.Parse(m.Groups["from"].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups["to"].Value, CultureInfo.InvariantCulture)))
            .ToList();
    }

    [GeneratedRegex(@"\[LoggerMessage\(\s*EventId\s*=\s*(?<id>\d+)")]
    private static partial Regex EventId();

    [GeneratedRegex(@"^\|\s*(?<from>\d+)-(?<to>\d+)\s*\|")]
    private static partial Regex RangeRow();
}
