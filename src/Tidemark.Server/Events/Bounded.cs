using System.Text;

namespace Tidemark.Server.Events;

/// <summary>
/// Caps for strings that come from clients and end up in events, problem documents and log lines. A
/// hostile client sends names, paths and reasons of megabytes; echoing them whole lets one request
/// fill the audit log or a log file. Long words are shortened in the middle of the text so the rest of
/// a message (what to do) survives.
/// </summary>
public static class Bounded
{
    /// <summary>Longest single word (a name, a path) kept whole; names are at most 64 characters, paths a few hundred.</summary>
    public const int MaxWordChars = 256;

    public const int MaxSubjectChars = 300;

    public const int MaxMessageChars = 2048;

    /// <summary>At most <paramref name="max"/> characters; what is cut is counted so the reader knows.</summary>
    public static string Text(string text, int max)
    {
        if (text.Length <= max)
        {
            return text;
        }

        var suffix = $"...({text.Length - max} more characters)";
        return string.Concat(text.AsSpan(0, Math.Max(0, max - suffix.Length)), suffix);
    }

    public static string? TextOrNull(string? text, int max) => text is null ? null : Text(text, max);

    /// <summary>Shortens every word longer than <see cref="MaxWordChars"/>, then caps the whole at <paramref name="max"/>.</summary>
    public static string Message(string text, int max = MaxMessageChars)
    {
        if (text.Length <= MaxWordChars)
        {
            return text;
        }

        var builder = new StringBuilder(Math.Min(text.Length, max + 64));
        var start = 0;
        while (start < text.Length && builder.Length <= max)
        {
            var end = start;
            while (end < text.Length && !char.IsWhiteSpace(text[end]))
            {
                end++;
            }

            var length = end - start;
            if (length > MaxWordChars)
            {
                builder.Append(text, start, MaxWordChars - 32).Append($"...({length - (MaxWordChars - 32)} more)");
            }
            else
            {
                builder.Append(text, start, length);
            }

            if (end < text.Length)
            {
                builder.Append(text[end]);
            }

            start = end + 1;
        }

        return Text(builder.ToString(), max);
    }
}
