using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Runtime.ExceptionServices;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

/// <summary>
/// A READ started on the device: its request and the buffer it is read into, at <see cref="Offset"/>:
/// one of the connection's pieces, or (<see cref="Lent"/>) a block lent by the output, whose reply then
/// carries the block itself instead of a copy (<see cref="IReplySendFeature.RentPayload"/>).
/// </summary>
internal readonly record struct ReadJob(NbdRequestHeader Request, byte[] Buffer, int Offset, int LengthBytes, bool Lent)
{
    /// <summary>Where the device reads the data to.</summary>
    public Memory<byte> Data => Buffer.AsMemory(Offset, LengthBytes);
}

/// <summary>A READ the device is done with: <see cref="NbdError.None"/> and the data in the job's buffer, or the mapped error.</summary>
internal readonly record struct ReadAnswer(ReadJob Job, NbdError Error, string? Message);

/// <summary>What <see cref="ParallelReads"/> needs of its connection: buffers, and the output while it owns it.</summary>
internal interface IReadReplies
{
    /// <summary>The job of one READ, with a buffer of its length (the job owns it until its reply was written or dropped).</summary>
    ReadJob RentJob(in NbdRequestHeader request);

    /// <summary>Writes the reply of <paramref name="answer"/> into the output (not sent yet) and gives its buffer back.</summary>
    void WriteReply(in ReadAnswer answer);

    /// <summary>Gives the job's buffer back without a reply (the session is over).</summary>
    void Drop(in ReadJob job);

    /// <summary>Replies written and not yet sent.</summary>
    int UnflushedBytes { get; }

    /// <summary>
    /// Sends what was written; <paramref name="onThisThread"/>: on the calling thread whatever the
    /// replies' size (the caller is the replier thread), else as a flush does.
    /// </summary>
    ValueTask<FlushResult> FlushAsync(bool onThisThread);
}

/// <summary>
/// The READs of one NBD connection on a device that serves many at once well
/// (<see cref="IBlockDevice.PreferredConcurrency"/> above 1, a RADOS-backed volume): each is started
/// on the connection thread with <see cref="IBlockDevice.ReadAsync"/> and no thread waits for it; its
/// reply goes out as soon as it is read, so replies may leave in another order than the requests came
/// (proto.md "Transmission": replies need not be sent in the same order as requests; "Ordering of
/// messages and writes": the server MAY reply out of order). Issue 22: one read at a time left a
/// RADOS-backed volume at 0.34-0.58x an RBD image at queue depth 32; a worker thread per read in
/// flight cost ~60 us of server CPU per 4K read in thread hand-offs (ADR 0021).
/// </summary>
/// <remarks>
/// <para>
/// Bounds: at most <c>maxInFlight</c> reads and <c>maxBytesInFlight</c> bytes of their buffers from
/// <see cref="Start"/> until their reply was written; <see cref="Start"/> waits for room, so a client
/// that sends more stops being read (backpressure, as WriteBehindBytes does for writes).
/// </para>
/// <para>
/// Threads: a read's device task ends on whichever thread ends it (librados's completion thread for
/// RADOS, shared by every connection of the server), and only queues the answer there. That thread
/// never writes or sends a reply, because a send blocks while the peer does not read and would hold
/// every other connection's reads; and a send that never blocks (MSG_DONTWAIT) cost more CPU per 4K
/// read than the wake-up it saved (ADR 0021, "Who sends a read's reply"). The answer goes to this
/// connection's replier thread, woken when it finds nobody replying (<c>_replying</c>, under
/// <c>_gate</c>). The replier writes every answer queued by then and by others meanwhile, sends them
/// on its own thread once the queue is empty (or when MaxUnflushedReplyBytes piled up; with
/// <see cref="IReplySendFeature.SendOnThisThread"/> a large reply is not handed on to the transport's
/// sender thread), and only then gives the role up. A device task that ended before
/// <see cref="Start"/> returned (a hole, a local store) is queued by the connection thread without a
/// wake-up: the connection thread replies itself before it waits for input (<see cref="FlushWritten"/>)
/// or at the barrier. A send that does not complete at once (TLS through a slow peer) keeps the role
/// until its completion continues the replier's loop. The replier
/// is a dedicated thread that ends after <see cref="IdleTimeout"/> without work.
/// </para>
/// <para>
/// The output has one writer at a time. While reads are handed off, the connection thread does not
/// touch it except as the replier (it calls <see cref="WaitAnswered"/> first, or
/// <see cref="FlushWritten"/>).
/// </para>
/// <para>
/// Buffers: a job owns its buffer from <see cref="Start"/> until its reply was written or dropped
/// (a large READ's buffer may be a block the output lent: its reply hands the block back as the
/// payload, uncopied), whichever thread that happens on, so an early session end can never give back a buffer a device
/// read still fills. <see cref="Stop"/> stops new reads, lets the running device reads end (a read
/// that fails is an error answer, like any other), and returns once nothing is in flight and nobody
/// replies; from then on the connection owns the output again, and answers are dropped.
/// </para>
/// </remarks>
internal sealed class ParallelReads
{
    /// <summary>The replier thread without work for this long ends; the next answer starts one again.</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(10);

    /// <summary>The replier thread's name.</summary>
    public const string ReplierThreadName = "NBD replies";

    // _gate: the bounds, the answers, the idle slots and the replier role (the connection thread
    // waits on it). _replierGate: the replier thread's wake-ups (it waits on it), so waking the
    // replier never wakes the connection thread instead.
    private readonly object _gate = new();
    private readonly object _replierGate = new();
    private readonly Queue<ReadAnswer> _answered = new();
    private readonly Stack<ReadSlot> _idleSlots = new();
    private readonly IBlockDevice _device;
    private readonly IReadReplies _replies;
    private readonly int _maxInFlight;
    private readonly long _maxBytesInFlight;
    private readonly int _maxUnflushedBytes;
    private int _inFlight;
    private long _bytesInFlight;
    private bool _replying;
    private bool _replierRunning;
    private bool _replierWake;
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
    /// Starts a READ on the device, after waiting for room under both bounds. Connection thread
    /// only. Throws <see cref="OperationCanceledException"/> once the reads were stopped (an abort).
    /// </summary>
    public void Start(in NbdRequestHeader request)
    {
        var length = (int)request.LengthBytes;
        ReadSlot? slot;
        WaitUntil(Until.Room, length);
        lock (_gate)
        {
            // Only this thread takes room: what the wait found is still there.
            ThrowIfClosedOrFaulted();
            _inFlight++;
            _bytesInFlight += length;
            _idleSlots.TryPop(out slot);
        }

        // Rented outside the lock; the job owns its buffer from here on.
        var job = _replies.RentJob(request);
        slot ??= new ReadSlot(this);
        ValueTask pending;
        try
        {
            pending = _device.ReadAsync((long)request.OffsetBytes, job.Data);
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }

        if (pending.IsCompleted)
        {
            var answer = Answer(job, Completion.Consume(pending));
            lock (_gate)
            {
                // The connection thread replies before it waits for input, or at the barrier.
                _idleSlots.Push(slot);
                _answered.Enqueue(answer);
            }

            return;
        }

        slot.Await(job, pending);
    }

    /// <summary>
    /// The barrier before any other request: waits until every read started was answered and sent,
    /// after which the connection thread owns the output again. Rethrows what failed in a read that
    /// was not a device error; throws <see cref="OperationCanceledException"/> after <see cref="Cancel"/>.
    /// </summary>
    public void WaitAnswered()
    {
        WaitUntil(Until.Answered, 0);
        lock (_gate)
        {
            ThrowIfClosedOrFaulted();
        }
    }

    /// <summary>
    /// Sends what the connection thread wrote before it handed the output off and the answers queued
    /// (it is about to wait for input), unless a replier is at work: that one sends them with its own.
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

        Reply(Sender.Connection);
    }

    /// <summary>
    /// Ends the reads from any thread: nothing new starts, answers are no longer written, and waiting
    /// callers of <see cref="Start"/> and <see cref="WaitAnswered"/> throw. Does not wait.
    /// </summary>
    public void Cancel()
    {
        lock (_gate)
        {
            _closed = true;
            Monitor.PulseAll(_gate);
        }
    }

    /// <summary>
    /// <see cref="Cancel"/>, then waits until the device reads that run have ended and nobody writes
    /// to the output any more (the session is over; their answers are dropped). Connection thread only.
    /// </summary>
    public void Stop()
    {
        Cancel();
        WaitUntil(Until.Idle, 0);
    }

    /// <summary>Who runs <see cref="Reply"/>, which decides how it sends.</summary>
    private enum Sender
    {
        /// <summary>The connection thread, before it waits: a flush (a large reply goes to the transport's sender thread).</summary>
        Connection,

        /// <summary>The replier thread: sends on itself, whatever the size.</summary>
        Replier,
    }

    private enum Until
    {
        /// <summary>Room for one more read of the given length under both bounds (or the reads stopped).</summary>
        Room,

        /// <summary>Every read answered and sent, nobody replying (or the reads stopped).</summary>
        Answered,

        /// <summary>Every read answered or dropped, nobody replying, even after a stop.</summary>
        Idle,
    }

    /// <summary>
    /// The connection thread's wait on _gate. Answers it queued itself (reads that ended before
    /// <see cref="Start"/> returned) have woken nobody, so while it waits with such answers queued and
    /// nobody replying, it replies itself: their room and the barrier depend on them.
    /// </summary>
    private void WaitUntil(Until until, int lengthBytes)
    {
        while (true)
        {
            lock (_gate)
            {
                var reply = false;
                while (!Reached(until, lengthBytes))
                {
                    if (!_replying && _answered.Count > 0)
                    {
                        _replying = true;
                        reply = true;
                        break;
                    }

                    Monitor.Wait(_gate);
                }

                if (!reply)
                {
                    return;
                }
            }

            Reply(Sender.Connection);
        }
    }

    /// <summary>Under _gate.</summary>
    private bool Reached(Until until, int lengthBytes) => until switch
    {
        Until.Room => _closed || _inFlight == 0 || (_inFlight < _maxInFlight && _bytesInFlight + lengthBytes <= _maxBytesInFlight),
        Until.Answered => _closed || (_inFlight == 0 && !_replying),
        _ => _inFlight == 0 && !_replying,
    };

    /// <summary>Under _gate: an abort, or what failed in a read that was not a device error, ends the session.</summary>
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

    /// <summary>The answer of a device read that ended: its data, or the mapped error.</summary>
    private ReadAnswer Answer(in ReadJob job, Exception? error)
    {
        switch (error)
        {
            case null:
                return new ReadAnswer(job, NbdError.None, null);
            case StorageException ex:
                return new ReadAnswer(job, NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
            case IOException ex:
                return new ReadAnswer(job, NbdError.IoError, ex.Message);
            default:
                // Not a device error: inline it would end the session, so the barrier rethrows it.
                lock (_gate)
                {
                    _fault ??= error;
                }

                return new ReadAnswer(job, NbdError.IoError, "internal error");
        }
    }

    /// <summary>A device read ended on the thread that ended it (librados's): queue the answer, and wake the replier if nobody replies.</summary>
    private void Answered(in ReadAnswer answer, ReadSlot slot)
    {
        lock (_gate)
        {
            _idleSlots.Push(slot);
            _answered.Enqueue(answer);
            if (_replying)
            {
                return; // the replier takes it with the others
            }

            _replying = true;
        }

        WakeReplier();
    }

    /// <summary>Hands the replier role (taken under _gate) to the replier thread, starting it when it is not running.</summary>
    private void WakeReplier()
    {
        var start = false;
        lock (_replierGate)
        {
            _replierWake = true;
            if (_replierRunning)
            {
                Monitor.Pulse(_replierGate);
            }
            else
            {
                _replierRunning = true;
                start = true;
            }
        }

        if (start)
        {
            new Thread(ReplierLoop) { IsBackground = true, Name = ReplierThreadName }.Start();
        }
    }

    private void ReplierLoop()
    {
        while (true)
        {
            lock (_replierGate)
            {
                while (!_replierWake)
                {
                    if (!Monitor.Wait(_replierGate, IdleTimeout) && !_replierWake)
                    {
                        _replierRunning = false;
                        return;
                    }
                }

                _replierWake = false;
            }

            Reply(Sender.Replier);
        }
    }

    /// <summary>
    /// The replier's loop (see the class remarks): writes the answers, sends once the queue ran
    /// empty, then gives the role up. Returns early when a send is pending; its completion goes on.
    /// </summary>
    private void Reply(Sender sender)
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
                if (!Send(sender))
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
            if (_replies.UnflushedBytes >= _maxUnflushedBytes && !Send(sender))
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
    private bool Send(Sender sender)
    {
        try
        {
            var flush = _replies.FlushAsync(onThisThread: sender == Sender.Replier);
            if (!flush.IsCompleted)
            {
                _ = ReplyAfterSendAsync(flush, sender);
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

    private async Task ReplyAfterSendAsync(ValueTask<FlushResult> flush, Sender sender)
    {
        try
        {
            Sent(await flush.ConfigureAwait(false));
        }
        catch (Exception ex)
        {
            Failed(ex);
        }

        Reply(sender);
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

    /// <summary>
    /// One read in flight: its job and the device task it waits for, with the continuation made once
    /// (no closure per read). At most one per read in flight; reused once its answer is queued.
    /// </summary>
    private sealed class ReadSlot
    {
        private readonly ParallelReads _owner;
        private readonly Action _onEnded;
        private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter _awaiter;
        private ReadJob _job;

        public ReadSlot(ParallelReads owner)
        {
            _owner = owner;
            _onEnded = OnEnded;
        }

        public void Await(in ReadJob job, ValueTask pending)
        {
            _job = job;
            _awaiter = pending.ConfigureAwait(false).GetAwaiter();
            _awaiter.UnsafeOnCompleted(_onEnded);
        }

        private void OnEnded()
        {
            Exception? error = null;
            try
            {
                _awaiter.GetResult(); // called back because it ended: never waits
            }
            catch (Exception ex)
            {
                error = ex;
            }

            var job = _job;
            _job = default;
            _awaiter = default;
            _owner.Answered(_owner.Answer(job, error), this);
        }
    }
}
