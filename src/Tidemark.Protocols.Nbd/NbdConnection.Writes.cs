using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// NBD_CMD_WRITE, the one path from request header to device write to reply, whatever the transport
// or the size: the payload is taken through the payload feature (the transport chooses how: straight
// from the socket, or through the pipe under TLS) into pooled pieces of at most WriteChunkBytes, and
// each piece is one job. A large WRITE's jobs run on the connection's write worker, so the connection
// thread receives the next request while the device takes this one (what made 1 MiB writes reach
// nbdkit, docs/BENCHMARKS.md, NBD run 6). A small WRITE runs inline on the connection thread, also at
// queue depth 32: handing each 4 KiB write to the worker cost a cross-thread wake-up per write and
// took 4K random writes at QD32 to 0.69x the inline build on a quiet machine (NBD run 8); inline they
// are level with it (NBD run 9). It is queued behind the worker only while the worker still owns the
// output (an earlier large WRITE is being applied), so order is kept.
//
// A large WRITE of whole 4 KiB pages on a transport that offers a payload source (plain TCP; not TLS,
// not an in-memory pipe) skips the pooled pieces: each piece is a source the device pulls itself
// (IBlockDevice.WriteFrom; the engine's file store splices it socket -> pipe -> file, one copy fewer),
// run on the connection thread after the earlier writes (TakeFromSource). A device error part-way
// drops the rest of the payload (IPayloadSource.Skip) and answers the error; a source that fails
// (peer closed, payload deadline) ends the session, as a failed receive does.
//
// Order and meaning are those of a disk: jobs run one at a time in arrival order; a write is answered
// only after the device took it (with FUA, durably); every other request first waits until all
// earlier writes are answered (TakeOutputBack), so reads, flushes, trims and zeroes see them.
//
// The output has one owner at a time: the connection thread while the worker is idle, the worker
// from the moment a job is queued until it is idle again. When the connection thread is about to wait
// for input, the worker sends the replies once its queue is empty, so a burst of writes is answered
// with one send.
public sealed partial class NbdConnection
{
    // A WRITE this large goes to the worker: its payload was mostly received straight from the socket,
    // so the input is empty while the next request is on its way, and receiving that while the device
    // takes this one was what made 1 MiB writes reach nbdkit (docs/BENCHMARKS.md, NBD run 6,
    // write-behind from 128 KiB). Smaller ones run inline (NBD runs 8 and 9).
    private const int LargeWriteBytes = 128 * 1024;

    private readonly PieceBuffers _pieces = new();
    private IPayloadFeature _payload;
    private SerialWorker<WriteJob>? _writer;
    private bool _outputHandedOff;
    private long _queuedWriteBytes;

    // Set by the worker, read by the connection thread once the worker is idle. The second is also
    // set when the read workers' send found the peer gone (WaitForReads).
    private Exception? _writerFault;
    private bool _peerStoppedReading;

    // The first device error of a WRITE sent to the device in several pieces; whoever runs the jobs.
    private (NbdError Error, string Message)? _writeError;

    // A job's data: a pooled piece (Payload), or a source the device pulls from the connection itself
    // (Source; such a job always runs on the connection thread, see TakeFromSource).
    private readonly record struct WriteJob(NbdRequestHeader Request, byte[]? Payload, long OffsetBytes, int LengthBytes, bool First, bool Last, IPayloadSource? Source = null);

    /// <summary>
    /// Takes a WRITE whose header was consumed: receives its payload piece by piece and runs or queues
    /// each piece. Returns the input's next read when it already holds more (the loop goes on with it
    /// without waiting for the socket), null when the loop must read.
    /// </summary>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder<>))] // no allocation per WRITE that waits for its payload
    private async ValueTask<ReadResult?> ReceiveWriteAsync(NbdRequestHeader request, CancellationToken cancellationToken)
    {
        // A write never overtakes an earlier read (NbdConnection.Reads.cs): its payload is taken
        // once every READ handed off was answered.
        WaitForReads();
        var length = (int)request.LengthBytes;
        if (!IsWellFormedWrite(request))
        {
            await DiscardPayloadAsync(length, cancellationToken);
            TakeOutputBack();
            ValidateWrite(request); // replies with the error the checks name
            return TryReadMore();
        }

        // Pieces are whole 4 KiB pages (so whole blocks of every block size) except the last.
        var pieceBytes = Math.Max(4096, _options.WriteChunkBytes / 4096 * 4096);
        var offset = (long)request.OffsetBytes;
        var received = 0;
        var fromSource = length >= LargeWriteBytes && ((offset | (long)length) & 4095) == 0;
        ReadResult? next = null;
        do
        {
            var take = Math.Min(pieceBytes, length - received);
            if (fromSource && _payload.OpenSource(take) is { } source)
            {
                take = source.RemainingBytes;
                TakeFromSource(new WriteJob(request, null, offset + received, take, First: received == 0, Last: received + take == length, source));
                received += take;
                if (received == length)
                {
                    next = TryReadMore();
                }

                continue;
            }

            byte[]? payload = null;
            if (take > 0)
            {
                payload = _pieces.Rent(take);
                try
                {
                    await _payload.ReceiveAsync(payload.AsMemory(0, take), cancellationToken);
                }
                catch
                {
                    _pieces.Return(payload);
                    throw;
                }
            }

            var job = new WriteJob(request, payload, offset + received, take, First: received == 0, Last: received + take == length);
            received += take;
            var handOff = length >= LargeWriteBytes;
            if (job.Last)
            {
                next = TryReadMore();
            }

            Dispatch(job, handOff);
        }
        while (received < length);

        return next;
    }

    /// <summary>
    /// Runs a piece whose device pulls its payload from the connection (the transport's payload
    /// source: splice into the store, no copy through memory). It runs here, on the connection
    /// thread, once every earlier write was applied and answered: the device reads the input itself,
    /// so nothing else may read it until the piece was taken, and handing it to the worker would only
    /// add a wake-up, as receiving is applying on this path (docs/adr/0010, "Follow-up: the payload source").
    /// </summary>
    private void TakeFromSource(in WriteJob job)
    {
        TakeOutputBack();
        Execute(job);
    }

    /// <summary>The input's next read if it holds bytes already (no wait), else null.</summary>
    private ReadResult? TryReadMore() => _input.TryRead(out var result) ? result : null;

    /// <summary>Runs <paramref name="job"/> inline or hands it to the write worker.</summary>
    private void Dispatch(in WriteJob job, bool handOff)
    {
        if (_outputHandedOff && !handOff && _writer!.IsIdle)
        {
            // The worker caught up while the connection waited for this request.
            TakeOutputBack();
        }

        if (_options.WriteBehindBytes <= 0 || (!_outputHandedOff && !handOff))
        {
            // Nothing queued (or no worker wanted) and nothing else to do: the thread is ours anyway.
            TakeOutputBack();
            Execute(job);
            return;
        }

        var worker = _writer ??= new SerialWorker<WriteJob>("NBD writes", RunQueuedAsync, FlushFromWorkerAsync);
        if (Volatile.Read(ref _queuedWriteBytes) + job.LengthBytes > _options.WriteBehindBytes)
        {
            WaitForRoom(worker, job.LengthBytes);
        }

        Interlocked.Add(ref _queuedWriteBytes, job.LengthBytes);
        _outputHandedOff = true;
        worker.Enqueue(job);
    }

    /// <summary>
    /// Backpressure: at most WriteBehindBytes of payload wait for the worker. A method of its own so
    /// the closure is allocated only when it waits, not on every WRITE.
    /// </summary>
    private void WaitForRoom(SerialWorker<WriteJob> worker, int bytes) =>
        worker.WaitFor(() => Volatile.Read(ref _queuedWriteBytes) + bytes <= _options.WriteBehindBytes);

    /// <summary>
    /// Makes the connection thread the output's owner again: waits until every READ handed off and
    /// every queued write was applied and answered, then surfaces what failed on a worker.
    /// </summary>
    private void TakeOutputBack()
    {
        WaitForReads();
        TakeWritesBack();
    }

    /// <summary>Takes the output back from the write worker: waits until every queued write was applied and answered.</summary>
    private void TakeWritesBack()
    {
        if (!_outputHandedOff)
        {
            return;
        }

        _writer!.WaitIdle();
        _outputHandedOff = false;
        if (_writerFault is { } fault)
        {
            // Not a device error: what the inline path would have let through ends this session too.
            _writerFault = null;
            ExceptionDispatchInfo.Throw(fault);
        }
    }

    /// <summary>
    /// The worker's side of a job: anything unexpected is kept for the connection thread. Completes
    /// at once unless the replies had to be flushed and that flush is pending.
    /// </summary>
    private ValueTask RunQueuedAsync(WriteJob job)
    {
        var flush = ValueTask.CompletedTask;
        try
        {
            if (_writerFault is null)
            {
                Execute(job);
                if (_unflushedBytes >= _options.MaxUnflushedReplyBytes)
                {
                    flush = FlushFromWorkerAsync();
                }
            }
            else if (job.Payload is { } payload)
            {
                _pieces.Return(payload);
            }
        }
        catch (Exception ex)
        {
            _writerFault ??= ex;
        }
        finally
        {
            Interlocked.Add(ref _queuedWriteBytes, -job.LengthBytes);
        }

        return flush;
    }

    /// <summary>
    /// Sends the worker's replies (its queue ran empty while the connection waits for input, or
    /// enough replies piled up). Never throws: a failure is kept for the connection thread.
    /// </summary>
    /// <remarks>
    /// On a plain connection the flush is the transport's send and completes at once. Under TLS it
    /// runs through SslStream into the same send, so it nearly always completes at once too; when it
    /// does not, the worker awaits it as an asynchronous item (SerialWorker parks until the flush
    /// completes; no sync-over-async, issue 18): the next reply cannot be written while a flush is
    /// pending anyway, and the flush's completion is driven by the socket side (reply sender,
    /// readiness poller, pool), never by this worker or by the connection thread, which at most waits
    /// for this worker (TakeOutputBack, WaitForRoom). Waiting is then backpressure from a peer that
    /// reads slowly, as the plain path's blocking send is.
    /// TlsTests.Nbd_OverTls_ABurstOfLargeWrites_IsAllAnswered_AndReadsBackIdentically drives it.
    /// </remarks>
    private ValueTask FlushFromWorkerAsync()
    {
        if (_unflushedBytes == 0 || _writerFault is not null)
        {
            return ValueTask.CompletedTask;
        }

        _unflushedBytes = 0;
        try
        {
            var flush = _output.FlushAsync();
            if (!flush.IsCompleted)
            {
                return AwaitFlushAsync(flush);
            }

            NoteFlushed(flush.Result);
        }
        catch (Exception ex)
        {
            _writerFault = ex;
        }

        return ValueTask.CompletedTask;
    }

    private async ValueTask AwaitFlushAsync(ValueTask<FlushResult> flush)
    {
        try
        {
            NoteFlushed(await flush.ConfigureAwait(false));
        }
        catch (Exception ex)
        {
            _writerFault = ex;
        }
    }

    private void NoteFlushed(FlushResult result)
    {
        if (result.IsCompleted || result.IsCanceled)
        {
            _peerStoppedReading = true;
        }
    }

    /// <summary>Applies one piece of a WRITE and, for its last piece, answers the WRITE.</summary>
    private void Execute(in WriteJob job)
    {
        var request = job.Request;
        var fua = (request.Flags & NbdCommandFlags.Fua) != 0;
        var whole = job.First && job.Last;
        if (job.First)
        {
            _writeError = null;
        }

        try
        {
            // After a piece failed, the rest of the WRITE is received and dropped.
            if (_writeError is null && job.Source is { } source)
            {
                Device.WriteFrom(job.OffsetBytes, job.LengthBytes, source, forceUnitAccess: fua && whole);
            }
            else if (_writeError is null && job.Payload is { } payload)
            {
                Device.Write(job.OffsetBytes, payload.AsSpan(0, job.LengthBytes), forceUnitAccess: fua && whole);
            }
        }
        catch (StorageException ex)
        {
            _writeError = (NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
        }
        catch (IOException ex) when (ex is not PayloadSourceException)
        {
            // A PayloadSourceException is the connection's, not the device's: it ends the session.
            _writeError = (NbdError.IoError, ex.Message);
        }
        finally
        {
            if (job.Payload is { } payload)
            {
                _pieces.Return(payload);
            }
        }

        if (job.Source is { RemainingBytes: > 0 } rest)
        {
            // The device failed part-way (or was not asked): drop the rest so the input stays in step.
            rest.Skip();
        }

        if (!job.Last)
        {
            return;
        }

        if (_writeError is { } failed)
        {
            ReplyError(request, failed.Error, failed.Message);
        }
        else if (whole || FlushIfFua(request))
        {
            // A WRITE in several pieces wrote them without FUA: one flush makes them all durable.
            ReplyOk(request);
        }
    }

    /// <summary>Reads and drops a payload the WRITE's checks refuse (it cannot be skipped otherwise).</summary>
    private async ValueTask DiscardPayloadAsync(int length, CancellationToken cancellationToken)
    {
        if (length == 0)
        {
            return;
        }

        var scratch = ArrayPool<byte>.Shared.Rent(Math.Min(length, 64 * 1024));
        try
        {
            for (var left = length; left > 0;)
            {
                var take = Math.Min(left, scratch.Length);
                await _payload.ReceiveAsync(scratch.AsMemory(0, take), cancellationToken);
                left -= take;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>A WRITE whose flags, export and range are acceptable as they are.</summary>
    private bool IsWellFormedWrite(in NbdRequestHeader header)
    {
        var size = (ulong)Device.SizeBytes;
        return (header.Flags & ~NbdCommandFlags.Fua) == 0
            && !_export!.IsReadOnly
            && !_export.Device.SoftwareWriteProtected
            && header.OffsetBytes <= size
            && header.LengthBytes <= size - header.OffsetBytes;
    }

    /// <summary>Lets the write worker apply what it has and end; its replies are dropped (the session is over).</summary>
    private void StopWriter()
    {
        if (_writer is not { } worker)
        {
            return;
        }

        _writer = null;
        worker.Stop();
        _outputHandedOff = false;
    }

    /// <summary>
    /// The connection's own spare payload buffers. Small pieces are rented on the connection thread
    /// and given back on the worker's; through ArrayPool.Shared they would pile up in the worker's
    /// per-thread cache and the connection thread would allocate afresh (a steady allocation per
    /// WRITE, which SteadyStateAllocationTests catches). Large pieces go to the shared pool.
    /// </summary>
    private sealed class PieceBuffers
    {
        private const int KeptBytes = 64 * 1024;
        private const int KeptCount = 64;
        private readonly Stack<byte[]> _spare = new(KeptCount);

        public byte[] Rent(int bytes)
        {
            if (bytes <= KeptBytes)
            {
                lock (_spare)
                {
                    while (_spare.TryPop(out var spare))
                    {
                        if (spare.Length >= bytes)
                        {
                            return spare;
                        }

                        ArrayPool<byte>.Shared.Return(spare);
                    }
                }
            }

            return ArrayPool<byte>.Shared.Rent(bytes);
        }

        public void Return(byte[] buffer)
        {
            if (buffer.Length <= KeptBytes)
            {
                lock (_spare)
                {
                    if (_spare.Count < KeptCount)
                    {
                        _spare.Push(buffer);
                        return;
                    }
                }
            }

            ArrayPool<byte>.Shared.Return(buffer);
        }

        /// <summary>Gives every spare back to the shared pool (the session is over).</summary>
        public void Clear()
        {
            lock (_spare)
            {
                while (_spare.TryPop(out var spare))
                {
                    ArrayPool<byte>.Shared.Return(spare);
                }
            }
        }
    }
}
