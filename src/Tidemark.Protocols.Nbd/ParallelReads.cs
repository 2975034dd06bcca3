using System.IO.Pipelines;
using System.Runtime.ExceptionServices;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

/// <summary>A READ handed to the workers: its request and the buffer (of the connection's pieces) it is read into.</summary>
internal readonly record struct ReadJob(NbdRequestHeader Request, byte[] Buffer, int LengthBytes);

/// <summary>A READ the device is done with: <see cref="NbdError.None"/> and the data in the job's buffer, or the mapped error.</summary>
internal readonly record struct ReadAnswer(ReadJob Job, NbdError Error, string? Message);

/// <summary>What <see cref="ParallelReads"/> needs of its connection: buffers, and the output while it owns it.</summary>
internal interface IReadReplies
{
    /// <summary>A buffer of at least <paramref name="lengthBytes"/> bytes for one read.</summary>
    byte[] RentBuffer(int lengthBytes);

    /// <summary>Writes the reply of <paramref name="answer"/> into the output (not sent yet) and gives its buffer back.</summary>
    void WriteReply(in ReadAnswer answer);

    /// <summary>Gives the job's buffer back without a reply (the session is over).</summary>
    void Drop(in ReadJob job);

    /// <summary>Replies written and not yet sent.</summary>
    int UnflushedBytes { get; }

    /// <summary>Sends what was written.</summary>
    ValueTask<FlushResult> FlushAsync();
}

/// <summary>
/// The READs of one NBD connection on a device that serves many at once well
/// (<see cref="IBlockDevice.PreferredConcurrency"/> above 1, a RADOS-backed volume): each runs on a
/// worker thread of this connection, and its reply goes out as soon as it is read, so replies may
/// leave in another order than the requests came (proto.md "Transmission": replies need not be sent
/// in the same order as requests; "Ordering of messages and writes": the server MAY reply out of
/// order). Issue 22: one read at a time left a RADOS-backed volume at 0.34-0.58x an RBD image at
/// queue depth 32.
/// </summary>
/// <remarks>
/// <para>
/// Bounds: at most <c>maxInFlight</c> reads and <c>maxBytesInFlight</c> bytes of their buffers from
/// <see cref="Start"/> until their reply was written; <see cref="Start"/> waits for room, so a client
/// that sends more stops being read (backpressure, as WriteBehindBytes does for writes). Workers are
/// dedicated threads, started as reads wait for one (never more than <c>maxInFlight</c>), and they
/// end after <see cref="IdleTimeout"/> without work: the .NET thread pool is a poor fit for reads
/// that block a thread on the network for hundreds of microseconds.
/// </para>
/// <para>
/// The output has one writer at a time. While reads are handed off, the connection thread does not
/// touch it (it calls <see cref="WaitAnswered"/> first, or <see cref="FlushWritten"/>); among the
/// workers, the one that finds nobody replying becomes the replier (<c>_replying</c>, under
/// <c>_gate</c>): it writes every answer queued by then and by others meanwhile, sends them once the
/// queue is empty (or when MaxUnflushedReplyBytes piled up), and only then gives the role up. The
/// others just queue their answer. A send that does not complete at once (TLS through a slow peer)
/// keeps the role until its completion continues the replier's loop; nothing blocks on it.
/// </para>
/// <para>
/// Buffers: a job owns its buffer from <see cref="Start"/> until its reply was written or dropped,
/// whichever thread that happens on, so an early session end can never give back a buffer a device
/// read still fills. <see cref="Stop"/> drops what no worker started, lets the running device reads
/// end (a read that throws is an error answer, like any other), and returns once nothing is in flight
/// and nobody replies; from then on the connection owns the output again, and answers are dropped.
/// </para>
/// </remarks>
internal sealed class ParallelReads
{
    /// <summary>A worker without work for this long ends; the next read starts one again.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);

    // _gate: the bounds, the answers and the replier role (the connection thread waits on it).
    // _workGate: the jobs no worker took yet and the worker threads (the workers wait on it), so
    // waking a worker never wakes the connection thread instead.
    private readonly object _gate = new();
    private readonly object _workGate = new();
    private readonly Queue<ReadJob> _waiting = new();
    private readonly Queue<ReadAnswer> _answered = new();
    private readonly IBlockDevice _device;
    private readonly IReadReplies _replies;
    private readonly int _maxInFlight;
    private readonly long _maxBytesInFlight;
    private readonly int _maxUnflushedBytes;
    private int _inFlight;
    private long _bytesInFlight;
    private int _threads;
    private bool _replying;
    private volatile bool _closed;
    private volatile bool _stoppedSending;
    private Exception? _fault;

    public ParallelReads(IBlockDevice device, IReadReplies replies, int maxInFlight, long maxBytesInFlight, int maxUnflushedBytes)
    {
        _device = device;
        _replies = replies;
        _maxInFlight = maxInFlight;
        _maxBytesInFlight = maxBytesInFlight;
        _maxUnflushedBytes = maxUnflushedBytes;
    }

    /// <summary>True once a send found that the peer no longer reads replies (or failed).</summary>
    public bool StoppedSending => _stoppedSending;

    /// <summary>True while no read is in flight and nobody replies (the output could be taken back at once).</summary>
    public bool IsIdle
    {
        get
        {
            lock (_gate)
            {
                return _inFlight == 0 && !_replying;
            }
        }
    }

    /// <summary>The largest read that can be handed off; a larger one is done inline.</summary>
    public long MaxReadBytes => _maxBytesInFlight;

    /// <summary>
    /// Hands a READ to the workers, after waiting for room under both bounds. Connection thread
    /// only. Throws <see cref="OperationCanceledException"/> once the reads were stopped (an abort).
    /// </summary>
    public void Start(in NbdRequestHeader request)
    {
        var length = (int)request.LengthBytes;
        int inFlight;
        lock (_gate)
        {
            while (!_closed && _inFlight > 0 && (_inFlight >= _maxInFlight || _bytesInFlight + length > _maxBytesInFlight))
            {
                Monitor.Wait(_gate);
            }

            ThrowIfClosedOrFaulted();
            inFlight = ++_inFlight;
            _bytesInFlight += length;
        }

        // Rented outside the locks; the job owns it from here on.
        var buffer = _replies.RentBuffer(length);
        bool startThread;
        lock (_workGate)
        {
            _waiting.Enqueue(new ReadJob(request, buffer, length));
            startThread = _threads < inFlight;
            if (startThread)
            {
                _threads++;
            }
            else
            {
                Monitor.Pulse(_workGate);
            }
        }

        if (startThread)
        {
            new Thread(WorkerLoop) { IsBackground = true, Name = "NBD reads" }.Start();
        }
    }

    /// <summary>
    /// The barrier before any other request: waits until every read handed off was answered and sent,
    /// after which the connection thread owns the output again. Rethrows what failed on a worker that
    /// was not a device error; throws <see cref="OperationCanceledException"/> after <see cref="Cancel"/>.
    /// </summary>
    public void WaitAnswered()
    {
        lock (_gate)
        {
            while (!_closed && (_inFlight > 0 || _replying))
            {
                Monitor.Wait(_gate);
            }

            ThrowIfClosedOrFaulted();
        }
    }

    /// <summary>
    /// Sends what the connection thread wrote before it handed the output off (it is about to wait for
    /// input), unless a replier is at work: that one sends it with its own replies.
    /// </summary>
    public void FlushWritten()
    {
        lock (_gate)
        {
            if (_replying || _closed)
            {
                return;
            }

            _replying = true;
        }

        Reply();
    }

    /// <summary>
    /// Ends the reads from any thread: nothing new starts, reads no worker began are dropped, answers
    /// are no longer written, and waiting callers of <see cref="Start"/> and <see cref="WaitAnswered"/>
    /// throw. Does not wait.
    /// </summary>
    public void Cancel()
    {
        lock (_gate)
        {
            _closed = true;
            Monitor.PulseAll(_gate);
        }

        lock (_workGate)
        {
            Monitor.PulseAll(_workGate);
        }
    }

    /// <summary>
    /// <see cref="Cancel"/>, then waits until the device reads that run have ended and nobody writes
    /// to the output any more (the session is over; their answers are dropped).
    /// </summary>
    public void Stop()
    {
        Cancel();
        lock (_gate)
        {
            while (_inFlight > 0 || _replying)
            {
                Monitor.Wait(_gate);
            }
        }
    }

    /// <summary>Under _gate: an abort, or what failed on a worker that was not a device error, ends the session.</summary>
    private void ThrowIfClosedOrFaulted()
    {
        if (_closed)
        {
            throw new OperationCanceledException("the session's reads were stopped");
        }

        if (_fault is { } fault)
        {
            _fault = null;
            ExceptionDispatchInfo.Throw(fault);
        }
    }

    private void WorkerLoop()
    {
        while (true)
        {
            ReadJob job;
            lock (_workGate)
            {
                while (_waiting.Count == 0 && !_closed)
                {
                    if (!Monitor.Wait(_workGate, IdleTimeout) && _waiting.Count == 0)
                    {
                        _threads--;
                        return;
                    }
                }

                if (!_waiting.TryDequeue(out job))
                {
                    _threads--; // stopped, and nothing left
                    return;
                }
            }

            Answered(Read(job));
        }
    }

    /// <summary>The device read of one job; a storage or I/O error is an error answer, as inline.</summary>
    private ReadAnswer Read(in ReadJob job)
    {
        if (_closed)
        {
            return new ReadAnswer(job, NbdError.Shutdown, "the session is ending");
        }

        try
        {
            _device.Read((long)job.Request.OffsetBytes, job.Buffer.AsSpan(0, job.LengthBytes));
            return new ReadAnswer(job, NbdError.None, null);
        }
        catch (StorageException ex)
        {
            return new ReadAnswer(job, NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
        }
        catch (IOException ex)
        {
            return new ReadAnswer(job, NbdError.IoError, ex.Message);
        }
        catch (Exception ex)
        {
            // Not a device error: inline it would end the session, so the barrier rethrows it.
            lock (_gate)
            {
                _fault ??= ex;
            }

            return new ReadAnswer(job, NbdError.IoError, "internal error");
        }
    }

    private void Answered(in ReadAnswer answer)
    {
        lock (_gate)
        {
            _answered.Enqueue(answer);
            if (_replying)
            {
                return; // the replier takes it with the others
            }

            _replying = true;
        }

        Reply();
    }

    /// <summary>
    /// The replier's loop (see the class remarks): writes the answers, sends once the queue ran
    /// empty, then gives the role up. Returns early when a send is pending; its completion goes on.
    /// </summary>
    private void Reply()
    {
        // The job answered last is counted out with the next look at the queue: one lock per reply.
        var releaseBytes = -1;
        while (true)
        {
            ReadAnswer answer;
            bool any;
            bool write;
            lock (_gate)
            {
                if (releaseBytes >= 0)
                {
                    Release(releaseBytes);
                    releaseBytes = -1;
                }

                any = _answered.TryDequeue(out answer);
                if (!any && (_closed || _stoppedSending || _replies.UnflushedBytes == 0))
                {
                    _replying = false;
                    Monitor.PulseAll(_gate);
                    return;
                }

                write = !_closed && !_stoppedSending;
            }

            if (!any)
            {
                // Everything answered so far is written: send it in one go.
                if (!Send())
                {
                    return;
                }

                continue;
            }

            releaseBytes = answer.Job.LengthBytes;
            if (!write)
            {
                _replies.Drop(answer.Job);
                continue;
            }

            WriteOrFail(answer);
            if (_replies.UnflushedBytes >= _maxUnflushedBytes && !Send())
            {
                // The send's completion goes on with the loop; this job is answered already.
                lock (_gate)
                {
                    Release(releaseBytes);
                }

                return;
            }
        }
    }

    /// <summary>Counts one answered job out (under _gate): room for Start, or the barrier's turn.</summary>
    private void Release(int lengthBytes)
    {
        _inFlight--;
        _bytesInFlight -= lengthBytes;
        Monitor.PulseAll(_gate);
    }

    private void WriteOrFail(in ReadAnswer answer)
    {
        try
        {
            _replies.WriteReply(answer);
        }
        catch (Exception ex)
        {
            // The output failed under us (the transport was disposed): nothing more can be sent.
            Failed(ex);
        }
    }

    /// <summary>Sends what was written; false when the send is pending (its completion continues the loop).</summary>
    private bool Send()
    {
        try
        {
            var flush = _replies.FlushAsync();
            if (!flush.IsCompleted)
            {
                _ = ReplyAfterSendAsync(flush);
                return false;
            }

            Sent(flush.Result); // completed: reading it does not block
        }
        catch (Exception ex)
        {
            Failed(ex);
        }

        return true;
    }

    private async Task ReplyAfterSendAsync(ValueTask<FlushResult> flush)
    {
        try
        {
            Sent(await flush.ConfigureAwait(false));
        }
        catch (Exception ex)
        {
            Failed(ex);
        }

        Reply();
    }

    private void Sent(FlushResult result)
    {
        if (result.IsCompleted || result.IsCanceled)
        {
            _stoppedSending = true;
        }
    }

    private void Failed(Exception ex)
    {
        // A failure of the transport is the peer's going away, as on the inline path's flush.
        if (ex is not (IOException or ObjectDisposedException or OperationCanceledException))
        {
            lock (_gate)
            {
                _fault ??= ex;
            }
        }

        _stoppedSending = true;
    }
}
