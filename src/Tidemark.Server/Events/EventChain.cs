using System.Security.Cryptography;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// The audit log as a hash chain: each record carries, in <see cref="EventDto.Prev"/>, the SHA-256 of
/// the previous record's line exactly as stored, across rotation. Editing, removing or inserting a
/// record breaks the link of the record after it; the server also remembers the hash of the last
/// record it wrote, so changing or cutting the end shows too. Records written before the chain
/// existed (no Prev) are counted but not checked.
/// </summary>
public static class EventChain
{
    public static string HashOf(ReadOnlySpan<byte> line) => Convert.ToHexStringLower(SHA256.HashData(line));

    /// <summary>The hash of the newest whole record in <paramref name="path"/>'s last 256 KiB, with its sequence (records are a few KiB at most).</summary>
    public static (long Sequence, string? Hash) Tail(string path, JsonSerializerOptions json)
    {
        if (!File.Exists(path))
        {
            return (0, null);
        }

        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var length = (int)Math.Min(stream.Length, 256 * 1024);
        stream.Seek(-length, SeekOrigin.End);
        var buffer = new byte[length];
        stream.ReadExactly(buffer);
        var lines = Lines(buffer).ToList();
        for (var i = lines.Count - 1; i >= 0; i--)
        {
            var line = buffer.AsSpan(lines[i].Start, lines[i].Length);
            if (Parse(line, json) is { } entry)
            {
                return (entry.Sequence, HashOf(line));
            }
        }

        return (0, null);
    }

    /// <summary>Checks the chain through <paramref name="files"/> (oldest first) and against <paramref name="head"/>, the hash of the last record written.</summary>
    public static EventVerifyDto Verify(IReadOnlyList<string> files, string? head, JsonSerializerOptions json)
    {
        var problems = new List<EventChainProblemDto>();
        var pendingUnreadable = new List<EventChainProblemDto>();
        string? previousHash = null;
        long? previousSequence = null;
        long? first = null;
        long count = 0;
        var started = false;
        foreach (var path in files.Where(File.Exists))
        {
            var name = Path.GetFileName(path);
            var bytes = File.ReadAllBytes(path);
            long lineNumber = 0;
            foreach (var (start, length) in Lines(bytes))
            {
                lineNumber++;
                var line = bytes.AsSpan(start, length);
                if (line.IsEmpty)
                {
                    continue;
                }

                if (Parse(line, json) is not { } entry)
                {
                    // A crash can tear the last line; it hides nothing when the next record links past it.
                    pendingUnreadable.Add(new(name, lineNumber, null, "not a readable record (torn by a crash, or edited)"));
                    continue;
                }

                var hash = HashOf(line);
                count++;
                first ??= entry.Sequence;
                if (!started)
                {
                    // The oldest record kept, or one written before the chain existed: what it links to is gone or was never linked.
                    started = entry.Prev is not null;
                    pendingUnreadable.Clear();
                    previousHash = hash;
                    previousSequence = entry.Sequence;
                    continue;
                }

                var linked = entry.Prev == previousHash;
                if (!linked)
                {
                    problems.AddRange(pendingUnreadable);
                    problems.Add(new(name, lineNumber, entry.Sequence, entry.Prev is null
                        ? $"record {entry.Sequence} carries no link to record {previousSequence}: it was inserted or rewritten"
                        : $"record {entry.Sequence} does not link to record {previousSequence} before it: that record was changed, or records between were removed or inserted"));
                }
                else if (entry.Sequence != previousSequence + 1)
                {
                    problems.Add(new(name, lineNumber, entry.Sequence, $"sequence jumps from {previousSequence} to {entry.Sequence}"));
                }

                pendingUnreadable.Clear();
                previousHash = hash;
                previousSequence = entry.Sequence;
            }
        }

        problems.AddRange(pendingUnreadable);
        if (head is not null && previousHash != head)
        {
            problems.Add(new(Path.GetFileName(files[^1]), 0, previousSequence, $"the newest record ({previousSequence?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}) is not the one this server last wrote: the end of the log was changed or removed"));
        }

        return new EventVerifyDto(problems.Count == 0, count, first, previousSequence, problems);
    }

    public static EventDto? Parse(ReadOnlySpan<byte> line, JsonSerializerOptions json)
    {
        if (line.IsEmpty)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize<EventDto>(line, json);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static IEnumerable<(int Start, int Length)> Lines(byte[] bytes)
    {
        var start = 0;
        while (start < bytes.Length)
        {
            var end = Array.IndexOf(bytes, (byte)'\n', start);
            if (end < 0)
            {
                yield return (start, bytes.Length - start);
                yield break;
            }

            yield return (start, end - start);
            start = end + 1;
        }
    }
}
