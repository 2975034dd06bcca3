using System.Buffers;
using System.Runtime.CompilerServices;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

// READs with many in flight on a unit whose device serves many at once (issue 22; ADR 0021, iSCSI):
// IBlockDevice.PreferredConcurrency above 1, a RADOS-backed volume. A plain READ (6/10/12/16, SIMPLE or
// untagged) is admitted and checked on the connection thread by the unit's one READ check
// (ScsiLogicalUnit.BeginRead: the checks Execute makes, in the same order), started with
// IBlockDevice.ReadAsync into a buffer of the shared pool, and the connection thread goes on reading
// PDUs; no thread waits for the device. Units on local stores (PreferredConcurrency 1) keep the
// synchronous path exactly, and so does a READ alone (none in flight, no byte behind it in the
// receive buffer): at queue depth 1 a hand-off only adds a wake-up (ADR 0021).
//
// Threads and the output. Whoever holds _outputGate owns the output (the PipeWriter, _outHeader,
// _senseSegment, StatSN): the connection thread while it handles a batch of input, the keepalive
// ping, and the replier. The thread that ends a device read (librados's finisher, shared by every
// connection) never writes or sends: it queues the read to this connection's replier (a SerialWorker
// thread, "iSCSI replies"), which takes the gate, writes the Data-In PDUs and status of every read
// queued by then, sends them in one flush once its queue is empty, and gives the gate back. StatSN
// is assigned as each response is written, under the gate, so it rises in wire order whatever order
// the reads end in; ExpCmdSN/MaxCmdSN are those of the moment of writing. A read whose device task
// ended before ReadAsync returned is answered by the connection thread at once (it holds the gate).
//
// Bounds and order: at most MaxReadsInFlight (lowered to the device's preference) reads and
// MaxReadBytesInFlight bytes of their buffers, counted from the start until the answer was written or
// dropped. Before handling a PDU while reads are in flight, the connection thread decides whether it
// must wait (MustWaitForReads): a READ without room, and a barrier for every other SCSI command, a READ
// with the ORDERED or ACA attribute or a tag still in flight, and a logout. It then stops
// the batch before that PDU (consumed up to it), flushes, gives the gate back, waits on _readLock
// (WaitForReads) and handles the PDU with the next read of input. A barrier waits until every read
// was answered, so a WRITE never overtakes an earlier READ. Data-Out, NOP-Out, text and task
// management requests do not wait; a HEAD OF QUEUE READ does not either (it runs at once, inline).
//
// Abort and end: ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LUN RESET and the target resets mark
// the affected reads aborted under the gate before their TMF response is written, so no answer of
// theirs follows it; each stays counted in flight until its device read ended, when the replier
// drops it and gives its buffer back. Connection end (logout, close, error): StopReads marks the reads
// closed (answers are dropped) once the connection took the gate for good (a replier stuck in a send
// is cut short there as a ping is), lets a replier waiting for the gate give up, waits until every
// device read ended, and stops the replier; only then is the output completed and the nexus closed.
public sealed partial class IscsiConnection
{
    /// <summary>
    /// True when the session's target has units and every one is on a device that answers in network
    /// round trips (PreferredConcurrency above 1): a receive poll would only spin, so the transport is
    /// told to stop it (IConnectionPhase.StopReceivePoll). A unit on a local store keeps it.
    /// </summary>
    private bool EveryUnitAnswersSlowly() =>
        _target is { Units.Count: > 0 } target && target.Units.Values.All(unit => unit.Device.PreferredConcurrency > 1);

    /// <summary>The replier thread's name.</summary>
    public const string ReplierThreadName = "iSCSI replies";

    // RFC 7143 11.3.1 ATTR.
    private const byte TaskUntagged = 0;
    private const byte TaskSimple = 1;
    private const byte TaskOrdered = 2;
    private const byte TaskHeadOfQueue = 3;

    // _readLock: the counts below and the idle reads; the connection thread waits on it for room or the barrier.
    private readonly object _readLock = new();
    private readonly Stack<AsyncRead> _idleReads = new();

    // Reads in flight that can still be answered, by task tag: touched only by the holder of _outputGate.
    private readonly Dictionary<uint, AsyncRead> _readsByTag = [];
    private int _readsInFlight;
    private long _readBytesInFlight;
    private int _readConcurrency = 1;
    private SerialWorker<AsyncRead>? _replier;
    private CancellationTokenSource? _readsStopping;
    private volatile bool _readsClosed;

    // Connection thread only.
    private bool _readsStarted;
    private bool _inputFollows;
    private ReadWait _readWait;
    private long _readWaitBytes;

    // Replier thread only: it holds _outputGate across the answers it writes in one batch.
    private bool _replierHoldsGate;

    private enum ReadWait
    {
        None,

        /// <summary>Room under both bounds for a READ of _readWaitBytes.</summary>
        Room,

        /// <summary>Every read answered.</summary>
        Barrier,
    }

    /// <summary>READs started asynchronously and not yet answered or dropped (for tests and diagnostics).</summary>
    public int ReadsInFlight
    {
        get
        {
            lock (_readLock)
            {
                return _readsInFlight;
            }
        }
    }

    /// <summary>
    /// Whether the PDU whose BHS is <paramref name="header"/> must wait for the reads in flight before
    /// it is handled (see the file header); sets what to wait for. Connection thread, gate held.
    /// </summary>
    private bool MustWaitForReads(ReadOnlySpan<byte> header)
    {
        int inFlight;
        long bytes;
        lock (_readLock)
        {
            inFlight = _readsInFlight;
            bytes = _readBytesInFlight;
        }

        if (inFlight == 0)
        {
            return false;
        }

        var opcode = (IscsiOpcode)(header[0] & 0x3F);
        var wait = ReadWait.None;
        if (opcode == IscsiOpcode.LogoutRequest)
        {
            wait = ReadWait.Barrier;
        }
        else if (opcode == IscsiOpcode.ScsiCommand)
        {
            ScsiCommandPdu.TryRead(header, out var command);
            var read = command.Read && !command.Write && IsReadOpcode(header[ScsiCommandPdu.CdbOffset]);
            if (!read || command.TaskAttribute is TaskOrdered or > TaskHeadOfQueue || _readsByTag.ContainsKey(command.InitiatorTaskTag))
            {
                wait = ReadWait.Barrier; // ORDERED (2), ACA (4) and every other command wait for the reads
            }
            else if (command.TaskAttribute != TaskHeadOfQueue
                && (inFlight >= Math.Min(_limits.MaxReadsInFlight, _readConcurrency) || bytes + command.ExpectedDataTransferLengthBytes > _limits.MaxReadBytesInFlight))
            {
                wait = ReadWait.Room;
                _readWaitBytes = command.ExpectedDataTransferLengthBytes;
            }
        }

        _readWait = wait;
        return wait != ReadWait.None;
    }

    private static bool IsReadOpcode(byte opcode) =>
        opcode is ScsiOpcode.Read6 or ScsiOpcode.Read10 or ScsiOpcode.Read12 or ScsiOpcode.Read16;

    /// <summary>
    /// Waits, after the batch was flushed and the gate given back, for what <see cref="MustWaitForReads"/>
    /// asked. Connection thread (its own: it has nothing else to do until then).
    /// </summary>
    private void WaitForReads()
    {
        var wait = _readWait;
        _readWait = ReadWait.None;
        if (wait == ReadWait.None)
        {
            return;
        }

        lock (_readLock)
        {
            while (_readsInFlight > 0 && !_closing
                && (wait == ReadWait.Barrier
                    || _readsInFlight >= Math.Min(_limits.MaxReadsInFlight, _readConcurrency)
                    || _readBytesInFlight + _readWaitBytes > _limits.MaxReadBytesInFlight))
            {
                Monitor.Wait(_readLock);
            }
        }
    }

    /// <summary>
    /// Starts a READ on the device without waiting for it, when it may (see the file header); false
    /// leaves it to the synchronous paths. A READ the unit refuses is answered here, as inline.
    /// </summary>
    private bool TryStartAsyncRead(in ScsiCommandPdu command, ReadOnlySpan<byte> cdb)
    {
        var expected = command.ExpectedDataTransferLengthBytes;
        if (expected == 0 || expected > _limits.MaxReadBytesInFlight || _limits.MaxReadsInFlight < 2
            || command.TaskAttribute is not (TaskUntagged or TaskSimple)
            || !IsReadOpcode(cdb[0])
            || !_target!.Units.TryGetValue(ScsiTargetCommands.DecodeLun(command.Lun), out var unit))
        {
            return false;
        }

        var concurrency = unit.Device.PreferredConcurrency;
        if (concurrency < 2 || (!_inputFollows && ReadsInFlight == 0) || _readsByTag.ContainsKey(command.InitiatorTaskTag))
        {
            return false;
        }

        var itt = command.InitiatorTaskTag;
        var sense = _senseSegment.AsSpan(2);
        var result = unit.BeginRead(Nexus(ScsiTargetCommands.DecodeLun(command.Lun), unit), cdb, (int)expected, sense, out var plan);
        if (result.IsGood && plan.ReadBytes == 0)
        {
            result = unit.EndRead(plan, null, sense);
        }
        else if (result.IsGood)
        {
            StartDeviceRead(unit, command, plan, Math.Max(concurrency, _readConcurrency));
            return true;
        }

        SendStatus(itt, result, expected, 0);
        return true;
    }

    private void StartDeviceRead(ScsiLogicalUnit unit, in ScsiCommandPdu command, in ScsiReadPlan plan, int concurrency)
    {
        AsyncRead? read;
        lock (_readLock)
        {
            _readsInFlight++;
            _readBytesInFlight += plan.ReadBytes;
            _readConcurrency = concurrency;
            _idleReads.TryPop(out read);
        }

        if (_replier is null)
        {
            _readsStopping = new CancellationTokenSource();
            _replier = new SerialWorker<AsyncRead>(ReplierThreadName, ReplyAsync);
        }

        _readsStarted = true;
        read ??= new AsyncRead(this);
        read.Start(unit, command.InitiatorTaskTag, command.Lun, (int)command.ExpectedDataTransferLengthBytes, plan);
        ValueTask pending;
        try
        {
            pending = unit.Device.ReadAsync(plan.OffsetBytes, read.Buffer.AsMemory(0, plan.ReadBytes));
        }
        catch (Exception ex)
        {
            pending = ValueTask.FromException(ex);
        }

        if (pending.IsCompleted)
        {
            // Ended already (a hole, a store without a real asynchronous read): answered at once, no wake-up.
            read.Error = Completion.Consume(pending);
            WriteReadAnswer(read);
            return;
        }

        _readsByTag.Add(read.InitiatorTaskTag, read);
        read.Await(pending);
    }

    /// <summary>A device read ended, on whichever thread ended it (librados's): queue it to the replier, never write here.</summary>
    private void ReadEnded(AsyncRead read)
    {
        if (!_replier!.Enqueue(read))
        {
            DropRead(read); // the replier was stopped: nobody writes any more
        }
    }

    /// <summary>The replier's item: takes the gate unless it holds it, writes the answer, and sends the batch once nothing more is queued.</summary>
    private ValueTask ReplyAsync(AsyncRead read)
    {
        if (!_replierHoldsGate)
        {
            try
            {
                _outputGate.Wait(_readsStopping!.Token);
            }
            catch (OperationCanceledException)
            {
                DropRead(read); // the connection is ending and keeps the gate
                return default;
            }

            _replierHoldsGate = true;
        }

        try
        {
            WriteReadAnswer(read);
        }
        catch
        {
            ReleaseReplierGate();
            throw;
        }

        return _replier!.Queued > 0 ? default : SendRepliesAsync();
    }

    private async ValueTask SendRepliesAsync()
    {
        try
        {
            if (_outputPending)
            {
                await FlushOutputAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            // The connection is ending; the receive loop reports why.
        }
        finally
        {
            ReleaseReplierGate();
        }
    }

    private void ReleaseReplierGate()
    {
        _replierHoldsGate = false;
        _outputGate.Release();
    }

    /// <summary>Writes a read's Data-In and status (or drops it when aborted or the connection ends). Gate held.</summary>
    private void WriteReadAnswer(AsyncRead read)
    {
        ScsiResult result;
        try
        {
            result = read.Unit!.EndRead(read.Plan, read.Error, _senseSegment.AsSpan(2));
        }
        catch (Exception ex)
        {
            // Not a storage error: inline it would end the connection, so it does here.
            ReturnRead(read);
            EndDeadConnection($"a READ failed: {ex.Message}");
            return;
        }

        if (!read.Aborted && !_readsClosed)
        {
            // Not aborted: the tag in flight is this read's (a second READ with a tag in flight waits for it).
            _readsByTag.Remove(read.InitiatorTaskTag);
            var sent = 0;
            if (result.DataInBytes > 0)
            {
                sent = SendDataIn(read.InitiatorTaskTag, read.LunField, read.Buffer.AsSpan(0, result.DataInBytes), result, read.ExpectedBytes);
            }

            if (sent >= 0)
            {
                SendStatus(read.InitiatorTaskTag, result, (uint)read.ExpectedBytes, (uint)sent);
            }
        }

        ReturnRead(read);
    }

    /// <summary>Ends a read without an answer, on any thread (nothing here touches the output).</summary>
    private void DropRead(AsyncRead read)
    {
        Span<byte> sense = stackalloc byte[SenseData.FixedFormatLengthBytes];
        try
        {
            read.Unit!.EndRead(read.Plan, read.Error, sense);
        }
        catch (Exception)
        {
            // Not a storage error, and nobody to tell: the connection is ending.
        }

        ReturnRead(read);
    }

    /// <summary>Gives the read's buffer back and counts it out: room for the next, or the barrier's turn.</summary>
    private void ReturnRead(AsyncRead read)
    {
        var bytes = read.Plan.ReadBytes;
        read.Reset();
        lock (_readLock)
        {
            _readsInFlight--;
            _readBytesInFlight -= bytes;
            if (_idleReads.Count < _limits.MaxReadsInFlight)
            {
                _idleReads.Push(read);
            }

            Monitor.PulseAll(_readLock);
        }
    }

    /// <summary>
    /// Task management: the reads in flight of <paramref name="lunField"/> (all when null; only
    /// <paramref name="tag"/> when given) get no answer any more. Gate held. True when one was found.
    /// </summary>
    private bool AbortReads(ulong? lunField, uint? tag = null)
    {
        List<uint>? aborted = null;
        foreach (var (itt, read) in _readsByTag)
        {
            if ((tag is null || itt == tag) && (lunField is null || read.LunField == lunField))
            {
                (aborted ??= []).Add(itt);
            }
        }

        foreach (var itt in aborted ?? [])
        {
            _readsByTag.Remove(itt, out var read);
            read!.Aborted = true;
        }

        return aborted is not null;
    }

    /// <summary>
    /// The session is over and the connection holds the gate for good: no answer is written any more,
    /// a replier waiting for the gate gives up, and this returns once every device read ended and its
    /// buffer came back (a device read that never ends holds the session's end, as inline).
    /// </summary>
    private void StopReads()
    {
        if (_replier is not { } replier)
        {
            return;
        }

        _readsClosed = true;
        _readsStopping!.Cancel();
        lock (_readLock)
        {
            while (_readsInFlight > 0)
            {
                Monitor.Wait(_readLock);
            }
        }

        replier.Stop();
        _readsStopping.Dispose();
    }

    /// <summary>
    /// One READ in flight: what its answer needs, the pooled buffer the device reads into (owned from
    /// <see cref="Start"/> until <see cref="Reset"/>), and the continuation made once (no closure per read).
    /// </summary>
    private sealed class AsyncRead
    {
        private readonly IscsiConnection _owner;
        private readonly Action _onEnded;
        private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter _awaiter;

        public AsyncRead(IscsiConnection owner)
        {
            _owner = owner;
            _onEnded = OnEnded;
        }

        public ScsiLogicalUnit? Unit { get; private set; }

        public uint InitiatorTaskTag { get; private set; }

        public ulong LunField { get; private set; }

        public int ExpectedBytes { get; private set; }

        public ScsiReadPlan Plan { get; private set; }

        public byte[] Buffer { get; private set; } = [];

        /// <summary>Null when the device read succeeded.</summary>
        public Exception? Error { get; set; }

        /// <summary>Set by task management (gate held): the answer is dropped.</summary>
        public bool Aborted { get; set; }

        public void Start(ScsiLogicalUnit unit, uint itt, ulong lunField, int expectedBytes, in ScsiReadPlan plan)
        {
            Unit = unit;
            InitiatorTaskTag = itt;
            LunField = lunField;
            ExpectedBytes = expectedBytes;
            Plan = plan;
            Buffer = ArrayPool<byte>.Shared.Rent(plan.ReadBytes);
            Error = null;
            Aborted = false;
        }

        public void Await(ValueTask pending)
        {
            _awaiter = pending.ConfigureAwait(false).GetAwaiter();
            _awaiter.UnsafeOnCompleted(_onEnded);
        }

        public void Reset()
        {
            ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = [];
            Unit = null;
            Error = null;
        }

        private void OnEnded()
        {
            try
            {
                _awaiter.GetResult(); // called back because it ended: never waits
            }
            catch (Exception ex)
            {
                Error = ex;
            }

            _awaiter = default;
            _owner.ReadEnded(this);
        }
    }
}
