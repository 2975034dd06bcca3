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
/// <para>
/// A flush that carries a large reply (a span of <see cref="OffloadSpanBytes"/> or more) is handed
/// to the writer's sender thread instead, and so is every flush after it until the sender has
/// caught up (replies stay in order): the connection thread then reads the next request's data
/// from the device while the previous reply is copied into the socket. On this 2-core machine one
/// thread doing both was the limit of 1 MiB reads (NBD run 6 in docs/BENCHMARKS.md: the connection
/// thread busy all the time, a quarter of the CPU idle). Small replies keep the inline send, which
/// has no hand-off latency. At most <see cref="MaxInFlightBytes"/> wait for the sender; a flush
/// beyond it waits (backpressure of a peer that does not read). A protocol thread that only sends
/// replies (NBD's replier) sends large ones itself instead, and may queue a large payload from a block
/// lent to it rather than copy it in (<see cref="IReplySendFeature"/>, SocketReplyWriter.Replies.cs).
/// </para>
/// <para>
/// Used by one thread at a time (the connection's; iSCSI's keepalive takes the connection's output
/// gate first), except <see cref="CancelPendingFlush"/>. A send blocks while the peer does not read;
/// shutting the socket down (or cancelling the flush) ends it, and the flush then reports the output
/// as completed.
/// </para>
/// </remarks>
internal sealed partial class SocketReplyWriter(Socket socket) : PipeWriter, IReplySendFeature
{
    /// <summary>Spans of at least this size get a page-aligned block of their own.</summary>
    public const int LargeSpanBytes = 32 * 1024;

    /// <summary>A flush with a span of at least this size goes to the sender thread.</summary>
    public const int OffloadSpanBytes = 64 * 1024;

    /// <summary>Bytes handed to the sender thread and not yet sent, beyond which a flush waits.</summary>
    public const int MaxInFlightBytes = 4 << 20;

    private const int PageBytes = 4096;

    // The sender thread's side, under _senderLock: what it has to send, in order, each entry either
    // a segment or a block to give back once everything before it was sent. The thread is a
    // SerialWorker (the one stop-a-worker implementation) whose item is "send what was handed off":
    // at most one is queued (_sendQueued), and it takes everything handed off by the time it runs, so
    // a burst of flushes still goes out in one sendmsg, as when the sender had its own loop.
    private readonly object _senderLock = new();
    private readonly List<Outgoing> _handedOff = [];
    private readonly List<Outgoing> _batch = [];
    private readonly List<ArraySegment<byte>> _batchSegments = [];
    private long _inFlightBytes;
    private bool _senderFailed;
    private bool _sendQueued;
    private SerialWorker<bool>? _sender;

    private readonly List<ArraySegment<byte>> _queued = [];
    private readonly List<byte[]> _retired = [];
    private byte[]? _block;
    private int _blockEnd;
    private int _segmentStart;
    private int _position;
    private bool _failed;
    private bool _completed;

    /// <summary>
    /// Set while the connection negotiates: a flush then sends without blocking and waits for room on
    /// the shared poller, so a client that never reads holds no thread (see <see cref="SocketReadiness"/>).
    /// </summary>
    internal SocketReadiness.Registration? Negotiation { get; set; }

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

    /// <summary>
    /// Ends the connection's output, from any thread: a flush here is a send that cannot be taken back
    /// half-way, so cancelling it means the peer gets nothing more. Shutting the send side down makes a
    /// send blocked on a peer that does not read (inline, or on the sender thread) fail at once, and
    /// every later flush report the output as completed; the protocol then ends, and nothing stays
    /// blocked on that peer (an iSCSI initiator past its keepalive deadline, an NBD session ended by
    /// rollback).
    /// </summary>
    public override void CancelPendingFlush()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed or reset: sends fail either way.
        }
    }

    public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default) =>
        Negotiation is { } negotiation
            ? SendQueuedNegotiatingAsync(negotiation)
            : ValueTask.FromResult(new FlushResult(isCanceled: false, isCompleted: !SendQueued()));

    /// <summary>Sends what is still queued (best effort) and gives the blocks back.</summary>
    public override void Complete(Exception? exception = null)
    {
        if (_completed)
        {
            return;
        }

        if (exception is null && Negotiation is null)
        {
            // While negotiating the protocol flushed what it meant to send; a blocking send here
            // could wait forever on a client that does not read.
            SendQueued();
        }

        StopSender();
        _completed = true;
        _queued.Clear();
        Retire();
        ReturnRetired();
    }

    /// <summary>Waits until the sender thread has sent (or failed to send) everything handed to it.</summary>
    internal void WaitForSender()
    {
        lock (_senderLock)
        {
            while (_inFlightBytes > 0 && !_senderFailed)
            {
                Monitor.Wait(_senderLock);
            }
        }
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

    /// <summary>
    /// Sends everything written so far, here or (see the class remarks) by the sender thread; false
    /// once the peer is gone (then nothing more is sent). <paramref name="onThisThread"/>: large
    /// replies too are sent here, unless the sender thread still has earlier ones.
    /// </summary>
    private bool SendQueued(bool onThisThread = false)
    {
        CutSegment();

        if (_failed)
        {
            _queued.Clear();
            ReturnRetired();
            return false;
        }

        if (_block is not null && _block.Length > BlockPool.SmallBlockBytes)
        {
            // A large reply's block goes back once sent: an idle connection keeps one small block
            // at most, and the next large read reuses this one while it is still in cache.
            Retire();
        }

        if (HandOff(onThisThread))
        {
            return !_failed;
        }

        try
        {
            while (_queued.Count > 0)
            {
                var sent = _queued.Count == 1
                    ? socket.Send(_queued[0].AsSpan(), SocketFlags.None)
                    : socket.Send(_queued, SocketFlags.None);
                Consume(_queued, sent);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            _failed = true;
            _queued.Clear();
            EndConnection();
        }

        ReturnRetired();
        return !_failed;
    }

    private async ValueTask<FlushResult> SendQueuedNegotiatingAsync(SocketReadiness.Registration negotiation)
    {
        CutSegment();

        try
        {
            for (var i = 0; i < _queued.Count && !_failed; i++)
            {
                await negotiation.SendAsync(_queued[i]);
            }
        }
        catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
        {
            _failed = true;
        }

        _queued.Clear();
        ReturnRetired();
        return new FlushResult(isCanceled: false, isCompleted: _failed);
    }

    /// <summary>
    /// Gives the queued segments (and the retired blocks, to return after them) to the sender thread
    /// when they hold a large span (unless <paramref name="onThisThread"/>) or the sender still has
    /// something; false to send them inline.
    /// </summary>
    private bool HandOff(bool onThisThread)
    {
        long bytes = 0;
        var large = false;
        foreach (var segment in _queued)
        {
            bytes += segment.Count;
            large |= segment.Count >= OffloadSpanBytes;
        }

        lock (_senderLock)
        {
            if ((onThisThread || !large) && _inFlightBytes == 0 && !_senderFailed)
            {
                return false; // nothing in flight: an inline send keeps the order
            }

            while (_inFlightBytes >= MaxInFlightBytes && !_senderFailed)
            {
                Monitor.Wait(_senderLock);
            }

            if (_senderFailed)
            {
                _failed = true;
                _queued.Clear();
                ReturnRetired();
                return true;
            }

            foreach (var segment in _queued)
            {
                _handedOff.Add(new Outgoing(segment, null));
            }

            foreach (var block in _retired)
            {
                _handedOff.Add(new Outgoing(default, block));
            }

            _inFlightBytes += bytes;
            if (!_sendQueued)
            {
                _sendQueued = true;
                _sender ??= new SerialWorker<bool>("reply sender", _ => SendHandedOff());
                if (!_sender.Enqueue(true))
                {
                    // The sender faulted (see SendHandedOff): this output is over.
                    _sendQueued = false;
                    _senderFailed = true;
                    _failed = true;
                }
            }
        }

        _queued.Clear();
        _retired.Clear();
        return true;
    }

    /// <summary>The sender's item: sends everything handed off so far in one sendmsg, then gives back the blocks.</summary>
    private void SendHandedOff()
    {
        var batch = _batch;
        var segments = _batchSegments;
        bool failed;
        lock (_senderLock)
        {
            _sendQueued = false;
            batch.AddRange(_handedOff);
            _handedOff.Clear();
            failed = _senderFailed;
        }

        long bytes = 0;
        var finished = false;
        try
        {
            segments.Clear();
            foreach (var item in batch)
            {
                if (item.Block is null)
                {
                    segments.Add(item.Segment);
                    bytes += item.Segment.Count;
                }
            }

            while (!failed && segments.Count > 0)
            {
                var sent = segments.Count == 1
                    ? socket.Send(segments[0].AsSpan(), SocketFlags.None)
                    : socket.Send(segments, SocketFlags.None);
                Consume(segments, sent);
            }

            finished = true;
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            failed = true;
            finished = true;
            EndConnection();
        }
        finally
        {
            foreach (var item in batch)
            {
                if (item.Block is not null)
                {
                    BlockPool.Return(item.Block);
                }
            }

            batch.Clear();
            lock (_senderLock)
            {
                // Accounted even if something unexpected was thrown (the worker then faults and this
                // output is over), so no flush waits for room forever.
                _inFlightBytes -= bytes;
                _senderFailed |= failed || !finished;
                Monitor.PulseAll(_senderLock);
            }
        }
    }

    /// <summary>
    /// A send failed: the peer is gone, the output was cancelled, or the send deadline passed (the
    /// listener sets SO_SNDTIMEO, ConnectionLimits.SendTimeout: a send that moves no byte for that
    /// long fails). Nothing more can reach the peer, so the input ends too: a connection thread
    /// blocked in a receive (its replies were handed to the sender thread) wakes and ends the session,
    /// and the connection's thread, blocks and slot are given back instead of waiting on a client
    /// that half-closed or stopped reading.
    /// </summary>
    private void EndConnection()
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            // Already closed or reset.
        }
    }

    /// <summary>Lets the sender thread finish what it was given, and waits for it to end.</summary>
    private void StopSender()
    {
        SerialWorker<bool>? sender;
        lock (_senderLock)
        {
            sender = _sender;
        }

        sender?.Stop();
        if (_senderFailed || sender?.Fault is not null)
        {
            _failed = true;
        }
    }

    /// <summary>Drops <paramref name="sent"/> bytes from the front of the queue (a send may take part of it).</summary>
    private static void Consume(List<ArraySegment<byte>> queue, int sent)
    {
        var whole = 0;
        while (whole < queue.Count && sent >= queue[whole].Count)
        {
            sent -= queue[whole].Count;
            whole++;
        }

        queue.RemoveRange(0, whole);
        if (sent > 0)
        {
            queue[0] = queue[0][sent..];
        }
    }

    /// <summary>A segment to send, or (when <see cref="Block"/> is set) a block to give back.</summary>
    private readonly record struct Outgoing(ArraySegment<byte> Segment, byte[]? Block);

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
    /// kept between uses (a block beyond it goes back to the garbage collector). A payload that must
    /// start on a page (<see cref="RentAligned"/>) takes a block of its class plus one page, so a
    /// 1 MiB payload holds 1 MiB and a page rather than the 2 MiB class.
    /// </summary>
    internal static class BlockPool
    {
        /// <summary>Holds any span below <see cref="LargeSpanBytes"/> after its alignment slack.</summary>
        public const int SmallBlockBytes = 1 << FirstClassShift;
        private const int MaxRetainedBytes = 32 << 20;
        private const int FirstClassShift = 16;
        private static readonly ConcurrentStack<byte[]>[] Classes = [.. Enumerable.Range(0, 31 - FirstClassShift).Select(_ => new ConcurrentStack<byte[]>())];
        private static readonly ConcurrentStack<byte[]>[] AlignedClasses = [.. Enumerable.Range(0, 30 - FirstClassShift).Select(_ => new ConcurrentStack<byte[]>())];
        private static long _retainedBytes;

        public static long RetainedBytes => Interlocked.Read(ref _retainedBytes);

        /// <summary>Lets go of every kept block (they are garbage once no connection holds them).</summary>
        public static void Trim()
        {
            foreach (var stack in Classes.Concat(AlignedClasses))
            {
                while (stack.TryPop(out var block))
                {
                    Interlocked.Add(ref _retainedBytes, -block.Length);
                }
            }
        }

        public static byte[] Rent(int minBytes) => Rent(Classes, minBytes, 0);

        /// <summary>
        /// A block with room for <paramref name="lengthBytes"/> from its first page boundary: its class
        /// (the power of two at or above the length) plus one page of slack for the alignment.
        /// </summary>
        public static byte[] RentAligned(int lengthBytes) => Rent(AlignedClasses, lengthBytes, PageBytes);

        public static void Return(byte[] block)
        {
            var (classes, slack) = BitOperations.IsPow2(block.Length) ? (Classes, 0) : (AlignedClasses, PageBytes);
            var classBytes = block.Length - slack;
            if (!BitOperations.IsPow2(classBytes) || classBytes < (1 << FirstClassShift))
            {
                return;
            }

            var index = BitOperations.Log2((uint)classBytes) - FirstClassShift;
            if (index >= classes.Length || Interlocked.Add(ref _retainedBytes, block.Length) > MaxRetainedBytes)
            {
                if (index < classes.Length)
                {
                    Interlocked.Add(ref _retainedBytes, -block.Length);
                }

                return;
            }

            classes[index].Push(block);
        }

        private static byte[] Rent(ConcurrentStack<byte[]>[] classes, int minBytes, int slack)
        {
            var shift = Math.Max(FirstClassShift, 32 - BitOperations.LeadingZeroCount((uint)minBytes - 1));
            var index = shift - FirstClassShift;
            if (index >= classes.Length)
            {
                return GC.AllocateUninitializedArray<byte>(minBytes + slack, pinned: true);
            }

            if (classes[index].TryPop(out var block))
            {
                Interlocked.Add(ref _retainedBytes, -block.Length);
                return block;
            }

            return GC.AllocateUninitializedArray<byte>((1 << shift) + slack, pinned: true);
        }
    }
}
