using System.Diagnostics;
using System.Globalization;

namespace Tidemark.Cli;

/// <summary>
/// A progress line on stderr for a stream the CLI sends or receives (snapshot export and import):
/// bytes so far, rate, and with a known total the percentage and ETA. Drawn only on a terminal and
/// without --json, redrawn at most five times a second.
/// </summary>
public sealed class TransferProgress
{
    private static readonly TimeSpan RedrawEvery = TimeSpan.FromMilliseconds(200);
    private readonly string _label;
    private readonly long? _totalBytes;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private TimeSpan _drawnAt = -RedrawEvery;
    private long _bytes;

    private TransferProgress(string label, long? totalBytes)
    {
        _label = label;
        _totalBytes = totalBytes is > 0 ? totalBytes : null;
    }

    /// <summary>A progress line for <paramref name="label"/>, or null when nobody would see it.</summary>
    public static TransferProgress? Start(bool json, string label, long? totalBytes) =>
        json || Console.IsErrorRedirected ? null : new TransferProgress(label, totalBytes);

    /// <summary>Wraps <paramref name="stream"/> so that every byte read or written through it is counted.</summary>
    public Stream Wrap(Stream stream) => new CountingStream(stream, this);

    /// <summary>Draws the final state and ends the line.</summary>
    public void Finish()
    {
        Draw();
        Console.Error.WriteLine();
    }

    private void Add(int count)
    {
        _bytes += count;
        if (_clock.Elapsed - _drawnAt >= RedrawEvery)
        {
            Draw();
        }
    }

    private void Draw()
    {
        _drawnAt = _clock.Elapsed;
        const int width = 30;
        var seconds = Math.Max(_clock.Elapsed.TotalSeconds, 0.001);
        var rate = _bytes / seconds;
        var done = $"{ByteSize.Format(_bytes)}{(_totalBytes is { } t ? "/" + ByteSize.Format(t) : string.Empty)} at {ByteSize.Format((long)rate)}/s";
        string line;
        if (_totalBytes is { } total)
        {
            var fraction = Math.Clamp((double)_bytes / total, 0, 1);
            var filled = (int)Math.Round(fraction * width);
            var eta = rate > 0 && _bytes < total ? $" ETA {TimeSpan.FromSeconds(Math.Ceiling((total - _bytes) / rate)):g}" : string.Empty;
            line = $"{_label} [{new string('#', filled)}{new string('-', width - filled)}] {(fraction * 100).ToString("F1", CultureInfo.InvariantCulture),5}% {done}{eta}";
        }
        else
        {
            line = $"{_label} {done}";
        }

        Console.Error.Write($"\r{line}   ");
    }

    private sealed class CountingStream(Stream inner, TransferProgress progress) : Stream
    {
        public override bool CanRead => inner.CanRead;

        public override bool CanSeek => false;

        public override bool CanWrite => inner.CanWrite;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override void Flush() => inner.Flush();

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count)
        {
            var read = inner.Read(buffer, offset, count);
            progress.Add(read);
            return read;
        }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var read = await inner.ReadAsync(buffer, cancellationToken);
            progress.Add(read);
            return read;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count)
        {
            inner.Write(buffer, offset, count);
            progress.Add(count);
        }

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            await inner.WriteAsync(buffer, cancellationToken);
            progress.Add(buffer.Length);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
