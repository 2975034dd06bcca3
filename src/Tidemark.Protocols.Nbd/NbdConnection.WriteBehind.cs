using System.Buffers;
using System.Runtime.ExceptionServices;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// Write-behind: a large WRITE (NbdServerOptions.WriteBehindMinBytes to WriteBehindMaxBytes) is
// received whole into a buffer of its own and handed to the connection's write-behind thread, which
// writes it to the device while this thread receives the next request. On a 2-core machine one
// thread that both received 1 MiB payloads and wrote them into the store's page cache was the limit
// of sequential writes (docs/BENCHMARKS.md, NBD run 6).
//
// Order and meaning are those of the inline path: jobs are written one at a time in arrival order;
// a write is answered only after the device took it (with FUA, durably); every other request first
// waits until all earlier writes are answered, so reads, flushes, trims and zeroes see them, and the
// connection never waits for input while a write is unanswered (the client may be waiting for that
// reply before it sends more).
public sealed partial class NbdConnection
{
    // Unanswered jobs at most: one being written, one waiting, one being received.
    private const int WriteBehindDepth = 3;

    private WriteBehindWorker? _writeBehind;

    private int UnansweredWrites => _writeBehind?.Unanswered ?? 0;

    /// <summary>
    /// Takes a WRITE for the write-behind thread when it qualifies: receives its payload (what is in
    /// <paramref name="buffer"/> after the header, then the rest straight from the socket) and
    /// submits it. False leaves <paramref name="buffer"/> untouched for the inline path.
    /// </summary>
    private bool TryWriteBehind(in NbdRequestHeader header, ref ReadOnlySequence<byte> buffer)
    {
        var length = header.LengthBytes;
        if (_payloadSocket is not { } socket
            || length < (uint)Math.Max(1, _options.WriteBehindMinBytes)
            || length > (uint)_options.WriteBehindMaxBytes
            || !IsWellFormedWrite(header))
        {
            return false;
        }

        var payload = ArrayPool<byte>.Shared.Rent((int)length);
        var inBuffer = (int)Math.Min(buffer.Length - NbdRequestHeader.SizeBytes, length);
        buffer.Slice(NbdRequestHeader.SizeBytes, inBuffer).CopyTo(payload);
        buffer = buffer.Slice(NbdRequestHeader.SizeBytes + inBuffer);

        // The receive buffer held everything received so far, so the socket's next bytes are the
        // rest of this payload.
        if (inBuffer < length && !socket.ReceiveExactly(payload.AsSpan(inBuffer, (int)length - inBuffer)))
        {
            ArrayPool<byte>.Shared.Return(payload);
            throw new EndOfStreamException("the peer closed in the middle of a WRITE payload");
        }

        var worker = _writeBehind ??= new WriteBehindWorker(Device);
        worker.Submit(new WriteJob(header, payload));
        while (worker.Unanswered >= WriteBehindDepth && worker.TryTakeDone(wait: true, out var done))
        {
            Answer(done);
        }

        AnswerWrites(waitForAll: false);
        return true;
    }

    /// <summary>A WRITE whose flags, export and range the inline path would accept as they are.</summary>
    private bool IsWellFormedWrite(in NbdRequestHeader header)
    {
        var size = (ulong)Device.SizeBytes;
        return (header.Flags & ~NbdCommandFlags.Fua) == 0
            && !_export!.IsReadOnly
            && header.OffsetBytes <= size
            && header.LengthBytes <= size - header.OffsetBytes;
    }

    /// <summary>Writes the replies of the write-behind jobs that are done (all of them, waiting, with <paramref name="waitForAll"/>).</summary>
    private void AnswerWrites(bool waitForAll)
    {
        if (_writeBehind is not { } worker)
        {
            return;
        }

        while (worker.Unanswered > 0 && worker.TryTakeDone(waitForAll, out var done))
        {
            Answer(done);
        }
    }

    private void Answer(in WriteDone done)
    {
        ArrayPool<byte>.Shared.Return(done.Payload);
        if (done.Fault is { } fault)
        {
            // Not a device error: what the inline path would have let through ends this session too.
            ExceptionDispatchInfo.Throw(fault);
        }

        if (done.Error is { } error)
        {
            ReplyError(done.Request, error, done.Message!);
        }
        else
        {
            ReplyOk(done.Request);
        }
    }

    /// <summary>Lets the write-behind thread finish what it has and end; its replies are dropped (the session is over).</summary>
    private void StopWriteBehind()
    {
        if (_writeBehind is not { } worker)
        {
            return;
        }

        _writeBehind = null;
        foreach (var payload in worker.Stop())
        {
            ArrayPool<byte>.Shared.Return(payload);
        }
    }

    private readonly record struct WriteJob(NbdRequestHeader Request, byte[] Payload);

    private readonly record struct WriteDone(NbdRequestHeader Request, byte[] Payload, NbdError? Error, string? Message, Exception? Fault);

    /// <summary>The thread that writes a connection's write-behind jobs, one at a time in order.</summary>
    private sealed class WriteBehindWorker(IBlockDevice device)
    {
        private readonly object _gate = new();
        private readonly Queue<WriteJob> _waiting = new();
        private readonly Queue<WriteDone> _done = new();
        private bool _stopping;
        private Thread? _thread;

        /// <summary>Submitted and not yet taken back with <see cref="TryTakeDone"/> (connection thread only).</summary>
        public int Unanswered { get; private set; }

        public void Submit(WriteJob job)
        {
            lock (_gate)
            {
                _waiting.Enqueue(job);
                if (_thread is null)
                {
                    _thread = new Thread(Run) { IsBackground = true, Name = "NBD write-behind" };
                    _thread.Start();
                }

                Monitor.PulseAll(_gate);
            }

            Unanswered++;
        }

        public bool TryTakeDone(bool wait, out WriteDone done)
        {
            lock (_gate)
            {
                while (wait && _done.Count == 0)
                {
                    Monitor.Wait(_gate);
                }

                if (!_done.TryDequeue(out done))
                {
                    return false;
                }
            }

            Unanswered--;
            return true;
        }

        /// <summary>Waits until every job was written and the thread ended; returns the payload buffers.</summary>
        public List<byte[]> Stop()
        {
            Thread? thread;
            lock (_gate)
            {
                _stopping = true;
                thread = _thread;
                Monitor.PulseAll(_gate);
            }

            thread?.Join();
            return [.. _done.Select(d => d.Payload)];
        }

        private void Run()
        {
            while (true)
            {
                WriteJob job;
                lock (_gate)
                {
                    while (_waiting.Count == 0 && !_stopping)
                    {
                        Monitor.Wait(_gate);
                    }

                    if (!_waiting.TryDequeue(out job))
                    {
                        return;
                    }
                }

                var done = Execute(job);
                lock (_gate)
                {
                    _done.Enqueue(done);
                    Monitor.PulseAll(_gate);
                }
            }
        }

        private WriteDone Execute(in WriteJob job)
        {
            var request = job.Request;
            try
            {
                device.Write((long)request.OffsetBytes, job.Payload.AsSpan(0, (int)request.LengthBytes), forceUnitAccess: (request.Flags & NbdCommandFlags.Fua) != 0);
                return new WriteDone(request, job.Payload, null, null, null);
            }
            catch (StorageException ex)
            {
                return new WriteDone(request, job.Payload, NbdErrorMapping.FromStorageError(ex.Error), ex.Message, null);
            }
            catch (IOException ex)
            {
                return new WriteDone(request, job.Payload, NbdError.IoError, ex.Message, null);
            }
            catch (Exception ex)
            {
                return new WriteDone(request, job.Payload, null, null, ex);
            }
        }
    }
}
