using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

/// <summary>
/// One NBD session over an <see cref="IDuplexPipe"/>: the fixed newstyle handshake, option haggling,
/// then the transmission phase until the client disconnects. One receive loop per connection;
/// requests are handled inline on it (IBlockDevice calls are synchronous and fast), and the replies of
/// every complete request in the receive buffer go out in one flush (DESIGN.md, data-path performance).
/// On a device that prefers several reads in flight, READs are started without waiting for them
/// (NbdConnection.Reads.cs, where the output's ownership is written down). Not thread-safe except
/// <see cref="Abort"/>.
/// </summary>
/// <remarks>
/// Buffer ownership: the option-data buffer, the write staging buffer and the allocation-run buffer
/// are rented from <see cref="ArrayPool{T}.Shared"/> by this connection, reused for every message and
/// returned when <see cref="RunAsync"/> ends. Inline read payloads are produced straight into the
/// memory of the output pipe, so they need no buffer of their own; a READ started without waiting
/// owns a piece buffer until its reply was written (or dropped), and RunAsync gives the pieces back
/// only after the reads stopped.
/// </remarks>
public sealed partial class NbdConnection
{
    private readonly INbdExportCatalog _catalog;
    private readonly NbdServerOptions _options;
    private readonly IConnectionPhase? _phase;
    private IDuplexPipe _transport;
    private PipeReader _input;
    private PipeWriter _output;
    private int _unflushedBytes;
    private volatile bool _aborted;
    private volatile bool _finished;

    /// <param name="transport">The connection's byte streams.</param>
    /// <param name="catalog">The exports offered.</param>
    /// <param name="options">Limits and hooks; the defaults when null.</param>
    /// <param name="payload">
    /// The transport's payload feature, through which WRITE payloads are received (until STARTTLS,
    /// after which they come through the decrypted pipe); null copies them out of <paramref name="transport"/>'s input.
    /// </param>
    /// <param name="phase">Told when the handshake is over and transmission begins; null when the transport does not care.</param>
    public NbdConnection(IDuplexPipe transport, INbdExportCatalog catalog, NbdServerOptions? options = null, IPayloadFeature? payload = null, IConnectionPhase? phase = null)
    {
        ArgumentNullException.ThrowIfNull(transport);
        ArgumentNullException.ThrowIfNull(catalog);
        _transport = transport;
        _input = transport.Input;
        _output = transport.Output;
        _catalog = catalog;
        _options = options ?? NbdServerOptions.Default;
        _payload = payload ?? new PipePayload(transport.Input);
        _phase = phase;
    }

    /// <summary>The export chosen by NBD_OPT_GO or NBD_OPT_EXPORT_NAME; null until transmission.</summary>
    public NbdExport? Export => _export;

    /// <summary>The transmission flags sent to the client (proto.md "Transmission flags").</summary>
    public NbdTransmissionFlags TransmissionFlags => _transmissionFlags;

    /// <summary>
    /// Runs the session until the client disconnects, the transport closes, the peer violates the
    /// protocol, or <see cref="Abort"/> / <paramref name="cancellationToken"/> ends it. Never throws for
    /// anything the peer sends; completes both directions of the transport before returning.
    /// </summary>
    public async Task<NbdSessionEnd> RunAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            var end = await NegotiateAsync(cancellationToken);
            if (end is { } negotiationEnd)
            {
                await TryFlushAsync(cancellationToken);
                return negotiationEnd;
            }

            if (_phase is not null)
            {
                await _phase.EnterDataPhaseAsync();
                if (Device.PreferredConcurrency > 1)
                {
                    _phase.StopReceivePoll(); // its answers are network round trips (IConnectionPhase.StopReceivePoll)
                }
            }

            return await TransmitAsync(cancellationToken);
        }
        catch (NbdProtocolViolationException ex)
        {
            // proto.md "Termination of the session": a violation of a mandatory condition MAY be
            // answered with a hard disconnect. Send what was already answered, then close (the
            // workers first give the output back: their pending work is dropped).
            StopReads();
            StopWriter();
            await TryFlushAsync(cancellationToken);
            return new NbdSessionEnd(NbdSessionEndReason.ProtocolViolation, ex.Message);
        }
        catch (OperationCanceledException ex)
        {
            // The token, or a transport that aborts reads this way (Kestrel's ConnectionAbortedException).
            return new NbdSessionEnd(NbdSessionEndReason.Aborted, cancellationToken.IsCancellationRequested ? "cancelled" : ex.Message);
        }
        catch (IOException ex)
        {
            return new NbdSessionEnd(NbdSessionEndReason.TransportError, ex.Message);
        }
        catch (ObjectDisposedException ex)
        {
            return new NbdSessionEnd(NbdSessionEndReason.TransportError, ex.Message);
        }
        finally
        {
            _finished = true;
            StopReads();
            StopWriter();
            ReturnBuffers();
            await CompleteTransportAsync();
        }
    }

    /// <summary>Ends the session from any thread: the pending receive returns and RunAsync completes.</summary>
    public void Abort()
    {
        _aborted = true;
        if (_finished)
        {
            return;
        }

        // A connection thread waiting for room for a READ, or for the READs before a request, goes on.
        Volatile.Read(ref _reads)?.Cancel();
        try
        {
            _input.CancelPendingRead();

            // A flush blocked on a client that stopped reading must end too.
            _output.CancelPendingFlush();
        }
        catch (ObjectDisposedException)
        {
            // The session completed its transport concurrently; it is over either way.
        }
    }

    /// <summary>
    /// Completes the output first (replies were flushed already) and then the input. A transport that
    /// fails while closing has nothing more to say to us, so that failure is not the session's.
    /// </summary>
    private async ValueTask CompleteTransportAsync()
    {
        try
        {
            await _output.CompleteAsync();
        }
        catch (IOException)
        {
            // The peer reset the connection while we closed it.
        }
        catch (ObjectDisposedException)
        {
            // The host disposed the stream under the pipe.
        }

        await _input.CompleteAsync();
    }

    private NbdSessionEnd AbortedEnd() => new(NbdSessionEndReason.Aborted, _aborted ? "aborted" : "read cancelled");

    /// <summary>Why a flush reported that no more replies can be sent.</summary>
    private NbdSessionEnd StoppedSendingEnd() => _aborted ? AbortedEnd() : new(NbdSessionEndReason.PeerClosed, "the peer stopped reading replies");

    /// <summary>Sends the queued replies; false when the peer no longer reads.</summary>
    private async ValueTask<bool> FlushAsync(CancellationToken cancellationToken)
    {
        if (_unflushedBytes == 0)
        {
            return true;
        }

        _unflushedBytes = 0;
        var result = await _output.FlushAsync(cancellationToken);
        return !result.IsCompleted && !result.IsCanceled;
    }

    /// <summary>
    /// Sends what was answered, before the connection waits for input: itself when it owns the
    /// output, else the write worker once its queue is empty (all replies of a burst in one send).
    /// False when the peer no longer reads.
    /// </summary>
    private ValueTask<bool> FlushOwnedAsync(CancellationToken cancellationToken)
    {
        if (_readsHandedOff)
        {
            // The read side owns the output; what this thread wrote before goes with its replies.
            _reads!.FlushWritten();
            return ValueTask.FromResult(!_reads.StoppedSending);
        }

        if (_outputHandedOff)
        {
            if (_writer!.CallDrainedOrIdle())
            {
                return ValueTask.FromResult(true);
            }

            TakeOutputBack();
        }

        return _peerStoppedReading ? ValueTask.FromResult(false) : FlushAsync(cancellationToken);
    }

    private async ValueTask TryFlushAsync(CancellationToken cancellationToken)
    {
        try
        {
            await FlushAsync(cancellationToken);
        }
        catch (IOException)
        {
            // The peer is gone already; nothing left to tell it.
        }
        catch (OperationCanceledException)
        {
            // Cancelled while closing: the transport is completed in RunAsync's finally anyway.
        }
        catch (ObjectDisposedException)
        {
            // The host disposed the stream under the pipe while we were closing.
        }
    }

    /// <summary>Reserves exactly <paramref name="lengthBytes"/> bytes of the output for one reply.</summary>
    private Span<byte> BeginReply(int lengthBytes) => _output.GetSpan(lengthBytes)[..lengthBytes];

    private void EndReply(int lengthBytes)
    {
        _output.Advance(lengthBytes);
        _unflushedBytes += lengthBytes;
    }

    private void ReturnBuffers()
    {
        if (_optionData is { } optionData)
        {
            _optionData = null;
            ArrayPool<byte>.Shared.Return(optionData);
        }

        _pieces.Clear();
        if (_runs is { } runs)
        {
            _runs = null;
            ArrayPool<AllocationRun>.Shared.Return(runs);
        }
    }
}
