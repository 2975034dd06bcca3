using System.Globalization;
using System.Text;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// A strict parser of the Prometheus text exposition format (0.0.4) for tests: every line must be a
/// HELP, a TYPE or a sample line, metric and label names must be valid, label values correctly
/// escaped, every sample must belong to a family announced by a TYPE line, and no series may appear
/// twice. Samples are keyed <c>name{a="1",b="2"}</c> with the labels sorted by name, so a test does
/// not depend on the order an exporter writes them in.
/// </summary>
internal sealed class PrometheusExposition
{
    private PrometheusExposition(Dictionary<string, double> samples, Dictionary<string, string> types, Dictionary<string, string> help)
    {
        Samples = samples;
        Types = types;
        Help = help;
    }

    public IReadOnlyDictionary<string, double> Samples { get; }

    /// <summary>TYPE of each family, by family name.</summary>
    public IReadOnlyDictionary<string, string> Types { get; }

    /// <summary>HELP of each family, by family name (unescaped).</summary>
    public IReadOnlyDictionary<string, string> Help { get; }

    public double this[string key] => Samples.TryGetValue(key, out var value) ? value : throw new KeyNotFoundException($"no sample {key} in the scrape");

    /// <summary>The samples of one family, keyed as <see cref="Samples"/>.</summary>
    public IEnumerable<KeyValuePair<string, double>> Family(string name) =>
        Samples.Where(s => s.Key == name || s.Key.StartsWith(name + "{", StringComparison.Ordinal));

    public static PrometheusExposition Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        var types = new Dictionary<string, string>(StringComparer.Ordinal);
        var help = new Dictionary<string, string>(StringComparer.Ordinal);
        var lineNumber = 0;
        foreach (var line in text.Split('\n'))
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }

            var where = $"line {lineNumber}: {line}";
            if (line.StartsWith('#'))
            {
                var parts = line.Split(' ', 4);
                if (parts.Length >= 3 && parts[1] is "HELP" or "TYPE")
                {
                    Assert.True(IsMetricName(parts[2]), $"bad metric name, {where}");
                    var rest = parts.Length == 4 ? parts[3] : "";
                    if (parts[1] == "TYPE")
                    {
                        Assert.Contains(rest, new[] { "counter", "gauge", "histogram", "summary", "untyped" });
                        Assert.True(types.TryAdd(parts[2], rest), $"second TYPE for {parts[2]}, {where}");
                    }
                    else
                    {
                        Assert.True(help.TryAdd(parts[2], rest.Replace("\\n", "\n", StringComparison.Ordinal).Replace("\\\\", "\\", StringComparison.Ordinal)), $"second HELP for {parts[2]}, {where}");
                    }
                }

                continue;
            }

            var (key, name, rest2) = ParseSeries(line, where);
            var fields = rest2.Split(' ');
            Assert.True(fields.Length is 1 or 2, $"expected a value and an optional timestamp, {where}");
            Assert.True(ParseValue(fields[0], out var value), $"bad value, {where}");
            if (fields.Length == 2)
            {
                Assert.True(long.TryParse(fields[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _), $"bad timestamp, {where}");
            }

            Assert.True(FamilyOf(name, types) is not null, $"sample of a family without TYPE, {where}");
            Assert.True(samples.TryAdd(key, value), $"series twice, {where}");
        }

        return new PrometheusExposition(samples, types, help);
    }

    private static string? FamilyOf(string name, Dictionary<string, string> types)
    {
        if (types.ContainsKey(name))
        {
            return name;
        }

        foreach (var suffix in new[] { "_bucket", "_sum", "_count" })
        {
            if (name.EndsWith(suffix, StringComparison.Ordinal) && types.TryGetValue(name[..^suffix.Length], out var type) && type is "histogram" or "summary")
            {
                return name[..^suffix.Length];
            }
        }

        return null;
    }

    private static (string Key, string Name, string Remainder) ParseSeries(string line, string where)
    {
        var i = 0;
        while (i < line.Length && line[i] != '{' && line[i] != ' ')
        {
            i++;
        }

        var name = line[..i];
        Assert.True(IsMetricName(name), $"bad metric name, {where}");
        var labels = new SortedDictionary<string, string>(StringComparer.Ordinal);
        if (i < line.Length && line[i] == '{')
        {
            i++;
            while (line[i] != '}')
            {
                var start = i;
                while (line[i] != '=')
                {
                    i++;
                }

                var label = line[start..i];
                Assert.True(IsLabelName(label), $"bad label name '{label}', {where}");
                Assert.True(line[i + 1] == '"', $"label value not quoted, {where}");
                i += 2;
                var value = new StringBuilder();
                while (line[i] != '"')
                {
                    if (line[i] == '\\')
                    {
                        value.Append(line[i + 1] switch
                        {
                            'n' => '\n',
                            '\\' => '\\',
                            '"' => '"',
                            var c => throw new Xunit.Sdk.XunitException($"bad escape \\{c}, {where}"),
                        });
                        i += 2;
                    }
                    else
                    {
                        value.Append(line[i++]);
                    }
                }

                i++;
                Assert.True(labels.TryAdd(label, value.ToString()), $"label {label} twice, {where}");
                if (line[i] == ',')
                {
                    i++;
                }
            }

            i++;
        }

        Assert.True(i < line.Length && line[i] == ' ', $"no value, {where}");
        return (Key(name, labels), name, line[(i + 1)..]);
    }

    /// <summary>The key of a series: its name and its labels sorted by name, values escaped as in the format.</summary>
    public static string Key(string name, IEnumerable<KeyValuePair<string, string>> labels)
    {
        var sorted = labels.OrderBy(l => l.Key, StringComparer.Ordinal).ToList();
        if (sorted.Count == 0)
        {
            return name;
        }

        return name + "{" + string.Join(',', sorted.Select(l => $"{l.Key}=\"{l.Value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)}\"")) + "}";
    }

    private static bool ParseValue(string text, out double value)
    {
        switch (text)
        {
            case "+Inf":
                value = double.PositiveInfinity;
                return true;
            case "-Inf":
                value = double.NegativeInfinity;
                return true;
            case "NaN":
                value = double.NaN;
                return true;
            default:
                return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
        }
    }

    private static bool IsMetricName(string name) =>
        name.Length > 0 && !char.IsAsciiDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or ':');

    private static bool IsLabelName(string name) =>
        name.Length > 0 && !char.IsAsciiDigit(name[0]) && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_') && !name.StartsWith("__", StringComparison.Ordinal);
}
