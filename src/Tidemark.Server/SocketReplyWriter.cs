using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net.Sockets;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Tidemark.Server;

/// <summary>
/// The output side of a block-protocol connection: replies are written into pinned blocks and sent
/// on the socket at each flush, on the connection's own thread, with one sendmsg(2) for everything
/// queued (DESIGN.md, data-path performance: no hand-off per request). A span of at least
/// <see cref="LargeSpanBytes"/> gets a block of its own, placed so that it ends on a page boundary:
/// the data of a read reply (whole pages behind a small header) is then page-aligned, for the
/// disk read that fills it and for the send that copies it out. On this machine's CPU a copy from
/// or to an address 24 bytes past a page boundary runs at half speed (docs/BENCHMARKS.md, NBD run 5).
/// </summary>
/// <remarks>
/// Used by one thread at a time (the connection's; iSCSI's keepalive takes the connection's output
/// gate first). A send blocks while the peer does not read; shutting the socket down ends it, and
/// the flush then reports the output as completed.
/// </remarks>
internal sealed class SocketReplyWriter(Socket socket) : PipeWriter
{
    /// <summary>Spans of at least this size get a page-aligned block of their own.</summary>
    public const int LargeSpanBytes = 32 * 1024;

    private const int PageBytes = 4096;

    private readonly List<ArraySegment<byte>> _queued = [];
    private readonly List<byte[]> _retired = [];
    private byte[]? _block;
    private int _blockEnd;
    private int _segmentStart;
    private int _position;
    private bool _failed;
    private bool _completed;

    /// <summary>Bytes written and not yet sent.</summary>
    public override bool CanGetUnflushedBytes => true;

    public override long UnflushedBytes
    {
        get
        {
            long total = _position - _segmentStart;
            foreach (var segment in _queued)
            {
                total += segment.Count;
            }

            return total;
        }
    }

    public override void Advance(int bytes)
    {
        if (bytes < 0 || _position + bytes > _blockEnd || (_block is null && bytes > 0))
        {
            throw new ArgumentOutOfRangeException(nameof(bytes), $"advanced {bytes} bytes past the span handed out");
        }

        _position += bytes;
    }

    public override Memory<byte> GetMemory(int sizeHint = 0) => Reserve(sizeHint);

    public override Span<byte> GetSpan(int sizeHint = 0) => Reserve(sizeHint).Span;

    public override void CancelPendingFlush()
    {
        // A flush is a blocking send and never pending; shutting the socket down is what ends one.
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
        ValueTask.FromResult(new FlushResult(isCanceled: false, isCompleted: !SendQueued()));

    /// <summary>Sends what is still queued (best effort) and gives the blocks back.</summary>
    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        if (exception is null)
        {
            SendQueued();
        }

        _completed = true;
        _queued.Clear();
        Retire();
        ReturnRetired();
    }

    private Memory<byte> Reserve(int sizeHint)
    {
        ObjectDisposedException.ThrowIf(_completed, this);
        var size = Math.Max(sizeHint, 1);
        if (size >= LargeSpanBytes)
        {
            // Its own block, ending on a page boundary (see the class remarks).
            Retire();
            var large = BlockPool.Rent(size + (2 * PageBytes)); // room for the alignment and the placement
            var start = AlignedOffset(large) + ((PageBytes - (size % PageBytes)) % PageBytes);
            Use(large, start, start + size);
            return large.AsMemory(start, size);
        }

        if (_block is null || _blockEnd - _position < size)
        {
            Retire();
            var small = BlockPool.Rent(BlockPool.SmallBlockBytes);
            Use(small, AlignedOffset(small), small.Length);
        }

        return _block.AsMemory(_position, _blockEnd - _position);
    }

    private void Use(byte[] block, int start, int end)
    {
        _block = block;
        _segmentStart = start;
        _position = start;
        _blockEnd = end;
    }

    /// <summary>Queues what was written into the current block and stops writing into it.</summary>
    private void Retire()
    {
        if (_block is null)
        {
            return;
        }

        if (_position > _segmentStart)
        {
            _queued.Add(new ArraySegment<byte>(_block, _segmentStart, _position - _segmentStart));
        }

        _retired.Add(_block);
        _block = null;
        _segmentStart = _position = _blockEnd = 0;
    }

    /// <summary>Sends everything written so far; false once the peer is gone (then nothing more is sent).</summary>
    private bool SendQueued()
    {
        if (_block is not null && _position > _segmentStart)
        {
            _queued.Add(new ArraySegment<byte>(_block, _segmentStart, _position - _segmentStart));
            _segmentStart = _position;
        }

        if (_failed)
        {
            _queued.Clear();
            ReturnRetired();
            return false;
        }

        try
        {
            while (_queued.Count > 0)
            {
                var sent = _queued.Count == 1
                    ? socket.Send(_queued[0].AsSpan(), SocketFlags.None)
                    : socket.Send(_queued, SocketFlags.None);
                Consume(sent);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _failed = true;
            _queued.Clear();
        }

        if (_block is not null && _block.Length > BlockPool.SmallBlockBytes)
        {
            // A large reply's block goes back at once: an idle connection keeps one small block at
            // most, and the next large read reuses this one while it is still in cache.
            Retire();
        }

        ReturnRetired();
        return !_failed;
    }

    /// <summary>Drops <paramref name="sent"/> bytes from the front of the queue (a send may take part of it).</summary>
    private void Consume(int sent)
    {
        var whole = 0;
        while (whole < _queued.Count && sent >= _queued[whole].Count)
        {
            sent -= _queued[whole].Count;
            whole++;
        }

        _queued.RemoveRange(0, whole);
        if (sent > 0)
        {
            _queued[0] = _queued[0][sent..];
        }
    }

    private void ReturnRetired()
    {
        foreach (var block in _retired)
        {
            BlockPool.Return(block);
        }

        _retired.Clear();
    }

    private static int AlignedOffset(byte[] pinned)
    {
        var address = Marshal.UnsafeAddrOfPinnedArrayElement(pinned, 0).ToInt64();
        return (int)((PageBytes - (address & (PageBytes - 1))) & (PageBytes - 1));
    }

    /// <summary>
    /// Pinned blocks shared by every connection, by power-of-two size class, with a bound on what is
    /// kept between uses (a block beyond it goes back to the garbage collector).
    /// </summary>
    internal static class BlockPool
    {
        /// <summary>Holds any span below <see cref="LargeSpanBytes"/> after its alignment slack.</summary>
        public const int SmallBlockBytes = 1 << FirstClassShift;
        private const int MaxRetainedBytes = 32 << 20;
        private const int FirstClassShift = 16;
        private static readonly ConcurrentStack<byte[]>[] Classes = [.. Enumerable.Range(0, 31 - FirstClassShift).Select(_ => new ConcurrentStack<byte[]>())];
        private static long _retainedBytes;

        public static long RetainedBytes => Interlocked.Read(ref _retainedBytes);

        /// <summary>Lets go of every kept block (they are garbage once no connection holds them).</summary>
        public static void Trim()
        {
            foreach (var stack in Classes)
            {
                while (stack.TryPop(out var block))
                {
                    Interlocked.Add(ref _retainedBytes, -block.Length);
                }
            }
        }

        public static byte[] Rent(int minBytes)
        {
            var shift = Math.Max(FirstClassShift, 32 - BitOperations.LeadingZeroCount((uint)minBytes - 1));
            var index = shift - FirstClassShift;
            if (index >= Classes.Length)
            {
                return GC.AllocateUninitializedArray<byte>(minBytes, pinned: true);
            }

            if (Classes[index].TryPop(out var block))
            {
                Interlocked.Add(ref _retainedBytes, -block.Length);
                return block;
            }

            return GC.AllocateUninitializedArray<byte>(1 << shift, pinned: true);
        }

        public static void Return(byte[] block)
        {
            if (!BitOperations.IsPow2(block.Length) || block.Length < (1 << FirstClassShift))
            {
                return;
            }

            var index = BitOperations.Log2((uint)block.Length) - FirstClassShift;
            if (index >= Classes.Length || Interlocked.Add(ref _retainedBytes, block.Length) > MaxRetainedBytes)
            {
                if (index < Classes.Length)
                {
                    Interlocked.Add(ref _retainedBytes, -block.Length);
                }

                return;
            }

            Classes[index].Push(block);
        }
    }
}
