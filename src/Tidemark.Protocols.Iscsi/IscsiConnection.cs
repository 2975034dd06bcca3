using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// One iSCSI connection (and, with MaxConnections=1, its session) over a duplex pipe. One receive
/// loop handles every complete PDU inline (SCSI commands run on the logical unit right here), queues
/// the replies in the output pipe and flushes them in one write once no complete PDU is left
/// (DESIGN.md, data-path performance). READs on a unit whose device serves many at once (RADOS) are
/// the exception: started without waiting and answered by a replier (IscsiConnection.AsyncReads.cs).
/// A protocol violation ends only this connection.
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The output gate is a SemaphoreSlim whose wait handle is never asked for: it holds no unmanaged resource.")]
public sealed partial class IscsiConnection
{
    private readonly IDuplexPipe _transport;
    private readonly IscsiTargetCatalog _catalog;
    private readonly IscsiLimits _limits;
    private readonly string? _portalAddress;
    private readonly IConnectionPhase? _phase;
    private readonly IPayloadFeature _payload;
    private readonly byte[] _inHeader = new byte[BasicHeaderSegment.LengthBytes];
    private readonly byte[] _outHeader = new byte[BasicHeaderSegment.LengthBytes];
    private FramingSettings _framing;
    private bool _fullFeature;
    private bool _dataPhaseEntered;
    // Set by the keepalive timer and async-event senders on other threads, read by the receive loop:
    // volatile so the loop sees it without relying on a lock it happens to take.
    private volatile bool _closing;
    private bool _outputPending;
    private long _outputBytes;
    private uint _statSn;
    private uint _expCmdSn;

    // Keepalive: the receive loop holds _outputGate while it handles input and flushes; the ping
    // timer takes it only when free, so it writes to the output pipe only while the loop waits for
    // input (a logout request waits for it). Times are Environment.TickCount64 milliseconds;
    // _waitingOnPeerSince is set while the loop or a ping waits on the initiator (for the rest of a
    // data segment, or for it to take our output), zero otherwise.
    private readonly SemaphoreSlim _outputGate = new(1, 1);
    private long _waitingOnPeerSince;
    private long _lastReceivedAt = Environment.TickCount64;
    private long _pingSentAt;
    private uint _pingTag;
    private uint _nextPingTag = 1;

    /// <param name="transport">The connected byte stream; the connection completes both directions when it ends.</param>
    /// <param name="catalog">Targets to serve.</param>
    /// <param name="limits">Caps and offered values; defaults when null.</param>
    /// <param name="portalAddress">"address:port" reported in SendTargets (RFC 7143 13.8); omitted when null.</param>
    /// <param name="phase">Told when login is over and full feature phase begins; null when the transport does not care.</param>
    /// <param name="payload">How large data segments are taken from the input; null copies them out of the pipe.</param>
    public IscsiConnection(IDuplexPipe transport, IscsiTargetCatalog catalog, IscsiLimits? limits = null, string? portalAddress = null, IConnectionPhase? phase = null, IPayloadFeature? payload = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(catalog);
        _transport = transport;
        _catalog = catalog;
        _limits = limits ?? new IscsiLimits();
        _portalAddress = portalAddress;
        _phase = phase;
        _payload = payload ?? new PipePayload(transport.Input);
        _parameters = new IscsiSessionParameters(_limits);

        // RFC 7143 6.1: before negotiation ends, login PDUs carry at most 8192 data bytes.
        _framing = new FramingSettings(false, false, _limits.LoginDataSegmentBytes, _limits.MaxAhsBytes);
    }

    /// <summary>Why the connection ended (null while running or after a clean logout).</summary>
    public string? CloseReason { get; private set; }

    public string? InitiatorName => _initiatorName;

    public string? TargetName => _target?.Name;

    private PipeWriter Output => _transport.Output;

    private TargetSequence Sequence => new(_statSn, _expCmdSn, _expCmdSn + (uint)_limits.CommandWindow - 1);

    public async Task RunAsync(CancellationToken cancellationToken = default)
    {
        var input = _transport.Input;
        using var keepalive = _limits.NopInInterval > TimeSpan.Zero
            ? new Timer(static state => ((IscsiConnection)state!).Keepalive(), this, _limits.NopInInterval / 4, _limits.NopInInterval / 4)
            : null;
        try
        {
            while (!_closing)
            {
                var result = await input.ReadAsync(cancellationToken).ConfigureAwait(false);

                // Free nearly always; a ping or logout request holds it for one small send, which the
                // keepalive deadline ends if the initiator takes nothing. This thread is the
                // connection's own, so it waits here rather than handing its work elsewhere.
                _outputGate.Wait(cancellationToken);
                try
                {
                    Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);
                    if (!await HandleInputAsync(input, result, cancellationToken).ConfigureAwait(false))
                    {
                        break;
                    }
                }
                finally
                {
                    _outputGate.Release();
                }

                // A PDU that must wait for READs in flight stopped the batch (IscsiConnection.AsyncReads.cs).
                WaitForReads();
                if (_fullFeature && !_dataPhaseEntered)
                {
                    // The final login response is sent: from here on the transport serves the data path.
                    _dataPhaseEntered = true;
                    if (_phase is not null)
                    {
                        await _phase.EnterDataPhaseAsync().ConfigureAwait(false);
                        if (EveryUnitAnswersSlowly())
                        {
                            _phase.StopReceivePoll();
                        }
                    }
                }
            }
        }
        catch (IscsiProtocolException e)
        {
            CloseReason = e.Message;
            await TryFlushAsync().ConfigureAwait(false);
            await DrainInputAsync(input, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            CloseReason ??= "cancelled";
        }
        catch (IOException e)
        {
            CloseReason ??= e.Message;
        }
        finally
        {
            keepalive?.Dispose();
            _closing = true;

            // A ping or logout request under way finishes before the output is completed; one whose
            // flush waits on an initiator that takes nothing is cut short. The gate is not given back:
            // nothing writes to the output after this.
            if (!_outputGate.Wait(_limits.NopInTimeout, CancellationToken.None))
            {
                Output.CancelPendingFlush();
                _outputGate.Wait(CancellationToken.None);
            }

            StopReads();
            ReleaseSession();
            await input.CompleteAsync().ConfigureAwait(false);
            await Output.CompleteAsync().ConfigureAwait(false);
        }
    }

    /// <summary>Handles one read's worth of input and flushes the replies; false when the loop is over.</summary>
    private async ValueTask<bool> HandleInputAsync(PipeReader input, ReadResult result, CancellationToken cancellationToken)
    {
        var buffer = result.Buffer;
        var stop = InputStop.NeedMore;
        try
        {
            stop = ProcessBuffer(ref buffer);
        }
        finally
        {
            // When output filled up before the input ran out, only what was consumed is marked
            // examined, so the next read returns the remaining complete PDUs at once; the same when a
            // large data segment is taken next (its header consumed, the rest is the payload's).
            if (stop != InputStop.NeedMore)
            {
                input.AdvanceTo(buffer.Start);
            }
            else
            {
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }

        if (stop == InputStop.LargeDataSegment)
        {
            await ReceiveLargePduAsync(cancellationToken).ConfigureAwait(false);
        }

        if (_streamedRead is not null)
        {
            await SendStreamedReadAsync(cancellationToken).ConfigureAwait(false);
        }

        var stoppedEarly = stop != InputStop.NeedMore;

        // Every reply queued while handling this batch goes out in one write.
        if (_outputPending)
        {
            await FlushOutputAsync(cancellationToken).ConfigureAwait(false);
        }

        return !((result.IsCompleted || result.IsCanceled) && !stoppedEarly);
    }

    /// <summary>
    /// The keepalive timer: pings an idle full-feature connection with a NOP-In that asks for an
    /// answer, and ends the connection when nothing at all arrived within the timeout after a ping,
    /// or when the loop has waited that long on the initiator (it stopped sending in the middle of a
    /// data segment, or takes none of our output). Never waits itself: the ping is sent only when the
    /// output is free, and its flush is awaited, not waited for.
    /// </summary>
    private void Keepalive()
    {
        if (!Volatile.Read(ref _fullFeature) || _closing)
        {
            return;
        }

        if (!_outputGate.Wait(0))
        {
            var since = Volatile.Read(ref _waitingOnPeerSince);
            if (since != 0 && Environment.TickCount64 - since >= (long)_limits.NopInTimeout.TotalMilliseconds)
            {
                EndDeadConnection($"the initiator sent or took no data for {_limits.NopInTimeout.TotalSeconds:F0} s while the target waited on it; the connection is taken to be dead");
            }

            return;
        }

        _ = PingIfIdleAsync();
    }

    /// <summary>Runs with the output gate held, and gives it back.</summary>
    private async Task PingIfIdleAsync()
    {
        try
        {
            if (_closing)
            {
                return;
            }

            var now = Environment.TickCount64;
            var lastReceived = Volatile.Read(ref _lastReceivedAt);
            if (_pingTag != 0 && lastReceived < _pingSentAt)
            {
                if (now - _pingSentAt >= (long)_limits.NopInTimeout.TotalMilliseconds)
                {
                    EndDeadConnection($"the initiator answered no NOP-In for {_limits.NopInTimeout.TotalSeconds:F0} s; the connection is taken to be dead");
                }

                return;
            }

            _pingTag = 0;
            if (now - lastReceived < (long)_limits.NopInInterval.TotalMilliseconds)
            {
                return;
            }

            // RFC 7143 11.19: a target-initiated NOP-In has ITT FFFFFFFFh, a TTT the initiator
            // returns in its NOP-Out, and does not advance StatSN.
            _pingTag = _nextPingTag++;
            if (_nextPingTag == BasicHeaderSegment.ReservedTag)
            {
                _nextPingTag = 1;
            }

            _pingSentAt = now;
            new NopInPdu(0, 0, BasicHeaderSegment.ReservedTag, _pingTag, Sequence).WriteTo(_outHeader);
            SendPdu([]);
            await FlushOutputAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            // The connection is ending; the receive loop reports why.
        }
        finally
        {
            _outputGate.Release();
        }
    }

    /// <summary>
    /// Ends a connection whose initiator is taken to be dead, from the timer: the pending read and a
    /// flush blocked on an initiator that does not read both end (the transport closes that side),
    /// so no thread stays behind.
    /// </summary>
    private void EndDeadConnection(string reason)
    {
        CloseReason ??= reason;
        _closing = true;
        try
        {
            _transport.Input.CancelPendingRead();
            Output.CancelPendingFlush();
        }
        catch (ObjectDisposedException)
        {
            // The connection completed its transport concurrently; it is over either way.
        }
    }

    /// <summary>Flushes the output, marked as waiting on the initiator while the flush is under way (see <see cref="Keepalive"/>).</summary>
    /// <summary>Sends what was queued (and counts the output as empty again); true once the output is over.</summary>
    private async ValueTask<bool> FlushOutputAsync(CancellationToken cancellationToken)
    {
        _outputPending = false;
        _outputBytes = 0;
        Volatile.Write(ref _waitingOnPeerSince, Math.Max(1, Environment.TickCount64));
        try
        {
            // True once the output is over (the initiator is gone): nothing more reaches it.
            return (await Output.FlushAsync(cancellationToken).ConfigureAwait(false)).IsCompleted;
        }
        finally
        {
            Volatile.Write(ref _waitingOnPeerSince, 0);
        }
    }

    /// <summary>
    /// After a protocol error, read and discard input for a short while before closing: closing with
    /// unread input makes TCP send a reset, which can destroy the Reject before the initiator reads it
    /// and kills initiators that write without MSG_NOSIGNAL (seen with libiscsi's test tool).
    /// </summary>
    private async Task DrainInputAsync(PipeReader input, CancellationToken cancellationToken)
    {
        using var linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        linger.CancelAfter(_limits.ProtocolErrorLinger);
        long drained = 0;
        try
        {
            while (drained < _limits.MaxCommandDataBytes)
            {
                var result = await input.ReadAsync(linger.Token).ConfigureAwait(false);
                drained += result.Buffer.Length;
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (OperationCanceledException)
        {
            // The linger time is over.
        }
        catch (IOException)
        {
            // The peer is gone already.
        }
    }

    private async Task TryFlushAsync()
    {
        // The READ replier may own the output now (IscsiConnection.AsyncReads.cs): the Reject waits its turn.
        if (!await _outputGate.WaitAsync(_limits.NopInTimeout).ConfigureAwait(false))
        {
            return;
        }

        try
        {
            if (_outputPending)
            {
                await FlushOutputAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (IOException)
        {
            // The peer is gone; nothing left to tell it.
        }
        catch (InvalidOperationException)
        {
            // The writer was completed by the transport.
        }
        finally
        {
            _outputGate.Release();
        }
    }

    /// <summary>
    /// Handles every complete PDU. Stops early when enough output is queued, or at the header of a PDU
    /// with a large data segment not yet received (consumed up to its data, BHS in _inHeader).
    /// </summary>
    private InputStop ProcessBuffer(ref ReadOnlySequence<byte> buffer)
    {
        while (!_closing)
        {
            if (!PduReader.TryReadPdu(buffer, _framing, _inHeader, out var pdu, out var consumed))
            {
                // Only an incomplete PDU is looked at again: a whole one (every 4 KiB command) costs nothing more.
                if (_fullFeature
                    && PduReader.TryReadLargePduHeader(buffer, _framing, _inHeader, LargeDataSegmentBytes, out var headerBytes, out var dataBytes))
                {
                    if (_readsStarted && MustWaitForReads(_inHeader))
                    {
                        return InputStop.OutputFull;
                    }

                    buffer = buffer.Slice(headerBytes);
                    _largeDataBytes = dataBytes;
                    return InputStop.LargeDataSegment;
                }

                break;
            }

            if (_readsStarted && MustWaitForReads(pdu.Header))
            {
                return InputStop.OutputFull; // this PDU waits for the READs in flight, then is handled
            }

            var rest = buffer.Slice(consumed);
            _inputFollows = !rest.IsEmpty;
            HandlePduOrReject(pdu);
            buffer = rest;
            if (_streamedRead is not null)
            {
                return InputStop.StreamedRead;
            }

            if (_outputBytes >= _limits.MaxQueuedOutputBytes)
            {
                return InputStop.OutputFull;
            }
        }

        return InputStop.NeedMore;
    }

    private void HandlePduOrReject(in IscsiPdu pdu)
    {
        try
        {
            HandlePdu(pdu);
        }
        catch (IscsiProtocolException e) when (_fullFeature)
        {
            // RFC 7143 11.17: tell the initiator which PDU was refused, then end the connection.
            SendReject(e.Reason, pdu.Header);
            throw;
        }
    }

    private void HandlePdu(in IscsiPdu pdu)
    {
        if (!pdu.DataDigestValid)
        {
            // RFC 7143 7.8: the PDU is discarded with a Reject; at ErrorRecoveryLevel 0 the connection ends.
            IscsiProtocolException.Throw(RejectReason.DataDigestError, "data digest mismatch");
        }

        if (!_fullFeature)
        {
            if (pdu.Opcode != IscsiOpcode.LoginRequest)
            {
                // RFC 7143 6.3: only Login Requests are valid before the full feature phase.
                IscsiProtocolException.Throw(RejectReason.ProtocolError, $"{pdu.Opcode} before login completed");
            }

            HandleLogin(pdu);
            return;
        }

        switch (pdu.Opcode)
        {
            case IscsiOpcode.ScsiCommand:
                HandleScsiCommand(pdu);
                break;
            case IscsiOpcode.DataOut:
                HandleDataOut(pdu);
                break;
            case IscsiOpcode.NopOut:
                HandleNopOut(pdu);
                break;
            case IscsiOpcode.TextRequest:
                HandleTextRequest(pdu);
                break;
            case IscsiOpcode.TaskManagementRequest:
                HandleTaskManagement(pdu);
                break;
            case IscsiOpcode.LogoutRequest:
                HandleLogout(pdu);
                break;
            case IscsiOpcode.LoginRequest:
                IscsiProtocolException.Throw(RejectReason.ProtocolError, "login request in full feature phase");
                break;
            case IscsiOpcode.Snack:
                // RFC 7143 11.16: SNACK needs ErrorRecoveryLevel > 0, which this target never negotiates.
                SendReject(RejectReason.ProtocolError, pdu.Header);
                break;
            default:
                SendReject(RejectReason.CommandNotSupported, pdu.Header);
                break;
        }
    }

    /// <summary>RFC 7143 4.2.2.1: accept a non-immediate command only inside [ExpCmdSN, MaxCmdSN]; outside it is ignored.</summary>
    private bool AcceptCmdSn(uint cmdSn, bool immediate)
    {
        if (immediate)
        {
            return true;
        }

        var max = _expCmdSn + (uint)_limits.CommandWindow - 1;
        if ((int)(cmdSn - _expCmdSn) < 0 || (int)(cmdSn - max) > 0)
        {
            return false;
        }

        _expCmdSn = cmdSn + 1;
        return true;
    }

    private void SendPdu(ReadOnlySpan<byte> data)
    {
        _outputBytes += PduWriter.Write(Output, _parameters.HeaderDigest && _fullFeature, _parameters.DataDigest && _fullFeature, _outHeader, data);
        _outputPending = true;
    }

    private void SendReject(RejectReason reason, ReadOnlySpan<byte> rejectedHeader)
    {
        new RejectPdu(reason, BasicHeaderSegment.LengthBytes, Sequence, 0).WriteTo(_outHeader);
        _statSn++;
        SendPdu(rejectedHeader[..BasicHeaderSegment.LengthBytes]);
    }
}
