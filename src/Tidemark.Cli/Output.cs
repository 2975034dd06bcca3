using System.Globalization;
using System.Text;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Cli;

/// <summary>Human tables by default, indented JSON with --json.</summary>
public static class Output
{
    private static readonly JsonSerializerOptions PrettyJson = new(ApiJson.Options) { WriteIndented = true };

    public static void Json<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, PrettyJson));

    private static readonly JsonSerializerOptions LineJson = new(ApiJson.Options) { WriteIndented = false };

    /// <summary>One compact JSON object per line (JSON Lines), for streams of records such as events.</summary>
    public static void JsonLine<T>(T value) => Console.Out.WriteLine(JsonSerializer.Serialize(value, LineJson));

    /// <summary>
    /// A one-line progress bar on stderr for a job the command follows, redrawn in place; nothing when
    /// stderr is not a terminal or the output is JSON (scripts read the result, not the bar).
    /// </summary>
    public static Action<JobDto>? ProgressBar(bool json)
    {
        if (json || Console.IsErrorRedirected)
        {
            return null;
        }

        var drawn = false;
        return job =>
        {
            const int width = 30;
            var fraction = job.Percent is { } p ? p / 100 : 0;
            var filled = (int)Math.Round(fraction * width);
            var amount = job.Total is { } total
                ? $"{job.Done.ToString("N0", CultureInfo.InvariantCulture)}/{total.ToString("N0", CultureInfo.InvariantCulture)} {job.Unit}"
                : $"{job.Done.ToString("N0", CultureInfo.InvariantCulture)} {job.Unit}";
            var eta = job.EtaSeconds is { } e ? $" ETA {TimeSpan.FromSeconds(Math.Ceiling(e)):g}" : "";
            var bar = job.Percent is null ? new string('.', width) : new string('#', filled) + new string('-', width - filled);
            Console.Error.Write($"\r{job.Kind} {job.Subject} [{bar}] {(job.Percent is { } pct ? $"{pct,5:F1}%" : "")} {amount}{eta}   ");
            drawn = true;
            if (job.State != "running" && drawn)
            {
                Console.Error.WriteLine();
            }
        };
    }

    public static string Size(long bytes) => ByteSize.Format(bytes);

    public static string Time(DateTimeOffset time) => time.ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    /// <summary>Prints rows under headers, columns padded to their widest cell.</summary>
    public static void Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select((h, i) => Math.Max(h.Length, all.Count == 0 ? 0 : all.Max(r => r[i].Length))).ToArray();
        var builder = new StringBuilder();
        Line(builder, headers, widths);
        foreach (var row in all)
        {
            Line(builder, row, widths);
        }

        Console.Out.Write(builder.ToString());
    }

    /// <summary>Prints "key: value" lines, keys aligned.</summary>
    public static void Fields(params (string Key, string Value)[] fields)
    {
        var width = fields.Max(f => f.Key.Length) + 1;
        foreach (var (key, value) in fields)
        {
            Console.Out.WriteLine((key + ":").PadRight(width + 1) + value);
        }
    }

    private static void Line(StringBuilder builder, IReadOnlyList<string> cells, int[] widths)
    {
        for (var i = 0; i < cells.Count; i++)
        {
            builder.Append(i == cells.Count - 1 ? cells[i] : cells[i].PadRight(widths[i] + 2));
        }

        builder.Append('\n');
    }
}
