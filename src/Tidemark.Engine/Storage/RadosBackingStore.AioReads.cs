using System.Buffers;
using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Tidemark.Engine.Storage;

// Reads without a thread waiting (ADR 0021): every object piece goes out as rados_aio_read with a
// completion callback, and the last callback completes a pooled IValueTaskSource. librados runs the
// callbacks on its finisher thread, one for the whole cluster handle: nothing that runs there may
// block (the continuations behind the task only release what the read held and queue its reply).
public sealed partial class RadosBackingStore
{
    private const int MaxPooledReads = 256;

    private readonly ConcurrentQueue<AioRead> _idleReads = new();
    private int _idleReadCount;

    /// <summary>
    /// Starts the read as librados aio and returns; the task ends on librados's finisher thread once
    /// every object piece was read (an error there faults it, as <see cref="Read"/> would throw). The
    /// read first waits for the writes in flight that overlap it (here, synchronously: a read just
    /// after a write of the same range), and takes its room in <see cref="RadosReadGate"/> without
    /// blocking: without room it starts when an earlier read ends.
    /// </summary>
    public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination)
    {
        ThrowIfFenced();
        CheckRange(offsetBytes, destination.Length);
        if (destination.IsEmpty)
        {
            return default;
        }

        _writes.WaitForOverlapping(offsetBytes, destination.Length);
        var read = RentAioRead();
        read.Add(offsetBytes, 0, destination.Length);
        return read.Begin(destination);
    }

    /// <summary>The runs of a fragmented range as one asynchronous read (see <see cref="ReadScattered"/> and <see cref="ReadAsync"/>).</summary>
    public ValueTask ReadScatteredAsync(ReadOnlySpan<StoreRead> reads, Memory<byte> destination)
    {
        ThrowIfFenced();
        if (reads.Length == 1)
        {
            return ReadAsync(reads[0].OffsetBytes, destination.Slice(reads[0].DestinationOffset, reads[0].LengthBytes));
        }

        foreach (var read in reads)
        {
            CheckRange(read.OffsetBytes, read.LengthBytes);
            _ = destination.Slice(read.DestinationOffset, read.LengthBytes); // in the buffer, or ArgumentOutOfRange before anything starts
            if (read.LengthBytes > 0)
            {
                _writes.WaitForOverlapping(read.OffsetBytes, read.LengthBytes);
            }
        }

        var aio = RentAioRead();
        foreach (var read in reads)
        {
            aio.Add(read.OffsetBytes, read.DestinationOffset, read.LengthBytes);
        }

        return aio.Begin(destination);
    }

    private AioRead RentAioRead()
    {
        if (_idleReads.TryDequeue(out var read))
        {
            Interlocked.Decrement(ref _idleReadCount);
            return read;
        }

        return new AioRead(this);
    }

    private void ReturnAioRead(AioRead read)
    {
        if (!_disposed && Interlocked.Increment(ref _idleReadCount) <= MaxPooledReads)
        {
            _idleReads.Enqueue(read);
            return;
        }

        Interlocked.Decrement(ref _idleReadCount);
        read.Free();
    }

    private void FreeAioReads()
    {
        while (_idleReads.TryDequeue(out var read))
        {
            read.Free();
        }
    }

    /// <summary>
    /// One asynchronous read: its object pieces, their completions, the pinned destination and the
    /// task's source. Pooled by its store; the task's result taken gives it back.
    /// </summary>
    private sealed unsafe class AioRead : PooledValueTaskSource, IReadGateWaiter
    {
        private static readonly nint OnPieceCompleteFunction = (nint)(delegate* unmanaged[Cdecl]<nint, nint, void>)&OnPieceComplete;

        private readonly RadosBackingStore _store;
        private GCHandle _self;
        private Piece[] _pieces = new Piece[4];
        private int _count;
        private long _bytes;
        private int _remaining;
        private Memory<byte> _destination;
        private MemoryHandle _pin;

        public AioRead(RadosBackingStore store)
        {
            _store = store;
            _self = GCHandle.Alloc(this);
        }

        public int Pieces => _count;

        public long Bytes => _bytes;

        /// <summary>Adds the object pieces of <paramref name="lengthBytes"/> store bytes at <paramref name="offsetBytes"/>, read to <paramref name="at"/> of the destination.</summary>
        public void Add(long offsetBytes, int at, int lengthBytes)
        {
            for (var done = 0; done < lengthBytes;)
            {
                var (oid, inObject, n) = _store.Piece(offsetBytes + done, lengthBytes - done);
                if (_count == _pieces.Length)
                {
                    Array.Resize(ref _pieces, _count * 2);
                }

                _pieces[_count++] = new Piece(oid, inObject, at + done, n);
                _bytes += n;
                done += n;
            }
        }

        /// <summary>Starts the pieces, now or once the read gate has room, and returns the task of the whole read.</summary>
        public ValueTask Begin(Memory<byte> destination)
        {
            _destination = destination;
            var task = CurrentTask;
            if (_count == 0)
            {
                Finish(); // a scattered read of empty runs only
            }
            else if (_store._reads.TryEnterOrQueue(this))
            {
                Submit();
            }

            return task;
        }

        /// <summary>Admitted by the read gate after waiting: started on the thread pool.</summary>
        public void Execute() => Submit();

        protected override void Returned() => _store.ReturnAioRead(this);

        public void Free()
        {
            if (_self.IsAllocated)
            {
                _self.Free();
            }
        }

        [UnmanagedCallersOnly(CallConvs = [typeof(CallConvCdecl)])]
        private static void OnPieceComplete(nint completion, nint argument)
        {
            var read = (AioRead)GCHandle.FromIntPtr(argument).Target!;
            if (Interlocked.Decrement(ref read._remaining) == 0)
            {
                read.Finish();
            }
        }

        private void Submit()
        {
            _pin = _destination.Pin();
            var start = (byte*)_pin.Pointer;

            // One count per piece plus one for this loop, so a piece that completes while later ones
            // are being started cannot end the read early.
            _remaining = _count + 1;
            var failed = 0;
            for (var i = 0; i < _count; i++)
            {
                ref var piece = ref _pieces[i];
                if (failed == 0)
                {
                    var rc = RadosNative.AioCreateCompletion(GCHandle.ToIntPtr(_self), OnPieceCompleteFunction, 0, out piece.Completion);
                    if (rc >= 0)
                    {
                        rc = RadosNative.AioRead(_store._io, piece.Oid, piece.Completion, (nint)(start + piece.At), (nuint)piece.Length, (ulong)piece.InObject);
                    }

                    if (rc >= 0)
                    {
                        continue; // its callback counts it
                    }

                    failed = rc;
                }

                piece.StartResult = failed; // not started: fails the read
                Interlocked.Decrement(ref _remaining);
            }

            if (Interlocked.Decrement(ref _remaining) == 0)
            {
                Finish();
            }
        }

        /// <summary>Every started piece ended: results into the buffer, completions released, room given back, the task completed.</summary>
        private void Finish()
        {
            StorageException? failure = null;
            var destination = _destination.Span;
            for (var i = 0; i < _count; i++)
            {
                ref var piece = ref _pieces[i];
                var rc = piece.StartResult;
                if (piece.Completion != 0)
                {
                    if (rc == 0)
                    {
                        rc = RadosNative.AioGetReturnValue(piece.Completion);
                    }

                    RadosNative.AioRelease(piece.Completion);
                }

                var chunk = destination.Slice(piece.At, piece.Length);
                if (rc == -RadosNative.Enoent)
                {
                    chunk.Clear(); // never written: zeros, like a hole in a sparse file
                }
                else if (rc < 0)
                {
                    failure ??= _store.Failure(rc, $"read of {piece.Length} bytes from {piece.Oid} at {piece.InObject}");
                }
                else if (rc < piece.Length)
                {
                    chunk[rc..].Clear(); // beyond the object's end: never written
                }
            }

            var pieces = _count;
            var bytes = _bytes;
            _pin.Dispose();
            _pin = default;
            _destination = default;
            Array.Clear(_pieces, 0, _count);
            _count = 0;
            _bytes = 0;
            if (pieces > 0)
            {
                _store._reads.Exit(pieces, bytes);
            }

            Complete(failure); // the consumer's continuation runs here, on librados's thread
        }

        private struct Piece(string oid, long inObject, int at, int length)
        {
            public readonly string Oid = oid;
            public readonly long InObject = inObject;
            public readonly int At = at;
            public readonly int Length = length;
            public nint Completion;
            public int StartResult;
        }
    }
}
