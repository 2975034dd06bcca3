using System.Text;
using System.Text.Json;
using Tidemark.Api;

namespace Tidemark.Server.Events;

/// <summary>
/// One hash-chained, rotated log of <see cref="EventLog"/>: NAME.jsonl plus up to
/// <see cref="Generations"/> - 1 older files NAME.1.jsonl (newest) .. NAME.N.jsonl (oldest). When the
/// current file passes <see cref="MaxFileBytes"/> every generation moves one up and the oldest is
/// dropped, so disk use stays under Generations × MaxFileBytes. Not thread-safe: <see cref="EventLog"/>
/// calls it under its lock.
/// </summary>
internal sealed class EventFile : IDisposable
{
    private readonly JsonSerializerOptions _json;
    private readonly string[] _paths; // oldest first; the last is the file being written
    private FileStream _file;

    public EventFile(string path, int generations, long maxFileBytes, JsonSerializerOptions json)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(generations, 2); // one file alone could not rotate
        Path = System.IO.Path.GetFullPath(path);
        Generations = generations;
        MaxFileBytes = maxFileBytes;
        _json = json;
        var directory = System.IO.Path.GetDirectoryName(Path)!;
        var stem = System.IO.Path.GetFileNameWithoutExtension(Path);
        var extension = System.IO.Path.GetExtension(Path);
        _paths = [.. Enumerable.Range(1, generations - 1).Reverse()
            .Select(i => System.IO.Path.Combine(directory, $"{stem}.{i}{extension}"))
            .Append(Path)];

        // The newest record kept names the chain's head and the sequence to continue from.
        foreach (var candidate in _paths.Reverse())
        {
            var tail = EventChain.Tail(candidate, json);
            if (tail.Hash is not null)
            {
                (Sequence, Head) = tail;
                break;
            }
        }

        _file = OpenForAppend(Path);
    }

    public string Path { get; }

    public int Generations { get; }

    public long MaxFileBytes { get; }

    public long Sequence { get; private set; }

    public string? Head { get; private set; }

    public long NextSequence() => ++Sequence;

    /// <summary>Appends one serialized record, rotating first when it would not fit.</summary>
    public void Append(byte[] line)
    {
        if (_file.Length + line.Length + 1 > MaxFileBytes && _file.Length > 0)
        {
            Rotate();
        }

        _file.Write(line);
        _file.WriteByte((byte)'\n');
        _file.Flush(flushToDisk: true);
        Head = EventChain.HashOf(line);
    }

    /// <summary>Every readable record, oldest first, across the generations kept.</summary>
    public IEnumerable<EventDto> ReadAll()
    {
        _file.Flush();
        foreach (var path in _paths)
        {
            if (!File.Exists(path))
            {
                continue;
            }

            using var reader = new StreamReader(new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete), Encoding.UTF8);
            while (reader.ReadLine() is { } line)
            {
                if (line.Length > 0 && EventChain.Parse(Encoding.UTF8.GetBytes(line), _json) is { } entry)
                {
                    yield return entry;
                }
            }
        }
    }

    public EventVerifyDto Verify()
    {
        _file.Flush();
        return EventChain.Verify(_paths, Head, _json);
    }

    private static FileStream OpenForAppend(string path)
    {
        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows())
        {
            // The audit log says who did what: readable by the server's owner only, like the token.
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }

        var stream = new FileStream(path, options);
        if (stream.Length > 0)
        {
            // After a crash the last line may lack its newline: start the next event on a line of its own.
            using var check = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            check.Seek(-1, SeekOrigin.End);
            if (check.ReadByte() != '\n')
            {
                stream.WriteByte((byte)'\n');
                stream.Flush(flushToDisk: true);
            }
        }

        return stream;
    }

    private void Rotate()
    {
        _file.Flush(flushToDisk: true);
        _file.Dispose();

        // _paths[0] is the oldest generation: each file takes the place of the next older one.
        for (var i = 0; i < _paths.Length - 1; i++)
        {
            if (File.Exists(_paths[i + 1]))
            {
                File.Move(_paths[i + 1], _paths[i], overwrite: true);
            }
        }

        _file = OpenForAppend(Path);
    }

    public void Dispose() => _file.Dispose();
}
