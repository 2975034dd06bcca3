using System.Buffers;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// proto.md "Transmission": the receive loop and request framing. Every complete request in the
// receive buffer is handled inline and its reply queued; the queue is flushed once no complete
// request is left (or when it grows past MaxUnflushedReplyBytes).
public sealed partial class NbdConnection
{
    private NbdExport? _export;
    private IBlockDevice? _device;
    private NbdTransmissionFlags _transmissionFlags;
    private bool _blockStatusEnabled;

    // A WRITE whose payload has not fully arrived is streamed into the staging buffer so the input
    // pipe never has to hold a whole 32 MiB payload (a transport with a small pause threshold, such
    // as Kestrel's, would otherwise stall before the payload completes).
    private byte[]? _writeStaging;
    private bool _writeInProgress;
    private NbdRequestHeader _pendingWrite;
    private int _pendingWriteReceivedBytes;

    // A block-aligned WRITE is instead streamed to the device as its payload arrives, whole blocks
    // straight from the receive buffer (no staging copy); a block split between two receive buffers
    // is assembled in _carry. A device error is remembered and answered once the payload is read.
    private bool _streaming;
    private long _streamCursor;
    private byte[]? _carry;
    private int _carryBytes;
    private (NbdError Error, string Message)? _streamError;

    // What has not arrived of a streamed WRITE is moved from the socket to the device through this
    // pipe (splice), without a copy through user memory; see SpliceRestOfPayload.
    private IPayloadSocket? _payloadSocket;
    private KernelPipe? _payloadPipe;

    private enum Step
    {
        NeedMoreData,
        FlushNeeded,
        Disconnect,
    }

    private async ValueTask<NbdSessionEnd> TransmitAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                return AbortedEnd();
            }

            var buffer = result.Buffer;
            Step step;
            try
            {
                step = ProcessRequests(ref buffer);
                while (step == Step.FlushNeeded)
                {
                    if (!await FlushAsync(cancellationToken))
                    {
                        _input.AdvanceTo(buffer.Start, buffer.End);
                        return StoppedSendingEnd();
                    }

                    step = ProcessRequests(ref buffer);
                }
            }
            catch (NbdProtocolViolationException)
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (UnansweredWrites > 0 && (step != Step.NeedMoreData || (buffer.IsEmpty && !_payloadSocket!.HasInput)))
            {
                // About to wait for input (or to end): the client may be waiting for these replies.
                AnswerWrites(waitForAll: true);
            }

            if (!await FlushAsync(cancellationToken))
            {
                return StoppedSendingEnd();
            }

            if (step == Step.Disconnect)
            {
                return new NbdSessionEnd(NbdSessionEndReason.ClientDisconnected);
            }

            if (result.IsCompleted)
            {
                return buffer.IsEmpty && !_writeInProgress
                    ? new NbdSessionEnd(NbdSessionEndReason.PeerClosed)
                    : new NbdSessionEnd(NbdSessionEndReason.TruncatedFrame, "the peer closed in the middle of a request");
            }
        }
    }

    /// <summary>
    /// Handles every complete request at the start of <paramref name="buffer"/> and slices it past
    /// them. Never throws on partial input; throws <see cref="NbdProtocolViolationException"/> on a
    /// request that cannot be framed (bad magic, WRITE payload over the cap).
    /// </summary>
    private Step ProcessRequests(ref ReadOnlySequence<byte> buffer)
    {
        while (true)
        {
            if (_unflushedBytes >= _options.MaxUnflushedReplyBytes)
            {
                return Step.FlushNeeded;
            }

            if (_writeInProgress)
            {
                if (!ContinueWritePayload(ref buffer))
                {
                    return Step.NeedMoreData;
                }

                continue;
            }

            if (!TryReadRequestHeader(buffer, out var header))
            {
                return Step.NeedMoreData;
            }

            if (header.Magic != NbdMagic.Request)
            {
                NbdProtocolViolationException.Throw($"bad request magic 0x{header.Magic:x8}");
            }

            if (header.Command == NbdCommand.Write)
            {
                // The payload follows the header and cannot be skipped without reading it all, so a
                // payload over the cap ends the connection (proto.md "Size constraints" allows a hard
                // disconnect for lengths deemed a denial of service beyond 2^25).
                if (header.LengthBytes > (uint)_options.MaxPayloadBytes)
                {
                    NbdProtocolViolationException.Throw($"write payload of {header.LengthBytes} bytes exceeds the {_options.MaxPayloadBytes}-byte cap");
                }

                if (TryWriteBehind(header, ref buffer))
                {
                    continue;
                }

                AnswerWrites(waitForAll: true);
                var length = (int)header.LengthBytes;
                var payload = buffer.Slice(NbdRequestHeader.SizeBytes);
                if (payload.Length >= length && payload.Slice(0, length).IsSingleSegment)
                {
                    payload = payload.Slice(0, length);
                    HandleWrite(header, payload.FirstSpan);
                    buffer = buffer.Slice(payload.End);
                    continue;
                }

                _writeInProgress = true;
                _pendingWrite = header;
                _pendingWriteReceivedBytes = 0;
                _streaming = CanStream(header);
                buffer = payload;
                continue;
            }

            AnswerWrites(waitForAll: true);
            buffer = buffer.Slice(NbdRequestHeader.SizeBytes);
            if (header.Command == NbdCommand.Disconnect)
            {
                // proto.md NBD_CMD_DISC: handle all outstanding requests (done: they were handled
                // in order), no reply, then close. The client MUST NOT send anything after it.
                return Step.Disconnect;
            }

            HandleCommand(header);
        }
    }

    /// <summary>
    /// Whether a WRITE whose payload spans receive buffers can go to the device piece by piece: it is
    /// valid (checked now, answered after the payload) and whole logical blocks.
    /// </summary>
    private bool CanStream(in NbdRequestHeader header)
    {
        var block = (uint)Device.LogicalBlockSizeBytes;
        if (header.LengthBytes == 0
            || !IsWellFormedWrite(header)
            || (header.OffsetBytes | header.LengthBytes) % block != 0)
        {
            return false; // the whole-payload path answers these with the right error
        }

        _streamCursor = (long)header.OffsetBytes;
        _carryBytes = 0;
        _streamError = null;
        return true;
    }

    /// <summary>Copies what has arrived of a streamed WRITE payload; true once it was handled.</summary>
    private bool ContinueWritePayload(ref ReadOnlySequence<byte> buffer)
    {
        var length = (int)_pendingWrite.LengthBytes;
        var missing = length - _pendingWriteReceivedBytes;
        var available = (int)Math.Min(buffer.Length, missing);
        if (_streaming)
        {
            foreach (var segment in buffer.Slice(0, available))
            {
                StreamToDevice(segment.Span);
            }

            buffer = buffer.Slice(available);
            _pendingWriteReceivedBytes += available;
            if (_pendingWriteReceivedBytes < length && !SpliceRestOfPayload())
            {
                return false;
            }

            _writeInProgress = false;
            _streaming = false;
            FinishStreamedWrite(_pendingWrite);
            return true;
        }

        // Grow with what has arrived, not with what the header claims: a header alone must not make
        // us hold MaxPayloadBytes.
        var staging = EnsureStaging(_pendingWriteReceivedBytes + available, _pendingWriteReceivedBytes);
        buffer.Slice(0, available).CopyTo(staging.AsSpan(_pendingWriteReceivedBytes, available));
        buffer = buffer.Slice(available);
        _pendingWriteReceivedBytes += available;
        if (_pendingWriteReceivedBytes < length)
        {
            return false;
        }

        _writeInProgress = false;
        HandleWrite(_pendingWrite, staging.AsSpan(0, length));
        return true;
    }

    private void StreamToDevice(ReadOnlySpan<byte> data)
    {
        var block = Device.LogicalBlockSizeBytes;
        if (_carryBytes > 0)
        {
            var take = Math.Min(block - _carryBytes, data.Length);
            data[..take].CopyTo(_carry.AsSpan(_carryBytes));
            _carryBytes += take;
            data = data[take..];
            if (_carryBytes < block)
            {
                return;
            }

            WritePiece(_carry.AsSpan(0, block));
            _carryBytes = 0;
        }

        var whole = data.Length / block * block;
        if (whole > 0)
        {
            WritePiece(data[..whole]);
        }

        if (whole < data.Length)
        {
            _carry ??= new byte[Math.Max(block, 4096)];
            data[whole..].CopyTo(_carry);
            _carryBytes = data.Length - whole;
        }
    }

    private void WritePiece(ReadOnlySpan<byte> piece)
    {
        if (_streamError is null)
        {
            try
            {
                Device.Write(_streamCursor, piece, forceUnitAccess: false);
            }
            catch (Exception ex) when (ex is StorageException or IOException)
            {
                RecordStreamError(ex);
            }
        }

        _streamCursor += piece.Length;
    }

    private void RecordStreamError(Exception ex) =>
        _streamError = ex is StorageException storage ? (NbdErrorMapping.FromStorageError(storage.Error), ex.Message) : (NbdError.IoError, ex.Message);

    /// <summary>
    /// Takes the rest of a streamed WRITE's payload (everything not in the receive buffer) straight
    /// from the socket: splice(2) moves it into a pipe and the device moves it from there into its
    /// store, a pipe-full at a time. True once the whole payload is in; false when this connection or
    /// device cannot (TLS, a device without it, blocks smaller than the device's unit, an earlier
    /// error), and the receive buffer goes on carrying the payload. The receive buffer holds nothing
    /// of the payload now, so the socket's next bytes are the payload's next bytes.
    /// </summary>
    private bool SpliceRestOfPayload()
    {
        if (_payloadSocket is not { } socket || _streamError is not null || Device is not IPipeWritable { CanWriteFromPipe: true } target)
        {
            return false;
        }

        var length = (int)_pendingWrite.LengthBytes;
        if (_carryBytes > 0)
        {
            // A block split by the end of the receive buffer: its rest comes from the socket.
            var need = Device.LogicalBlockSizeBytes - _carryBytes;
            if (!socket.ReceiveExactly(_carry.AsSpan(_carryBytes, need)))
            {
                throw new EndOfStreamException("the peer closed in the middle of a WRITE payload");
            }

            _carryBytes = 0;
            _pendingWriteReceivedBytes += need;
            WritePiece(_carry.AsSpan(0, Device.LogicalBlockSizeBytes));
        }

        var unit = Device.AllocationUnitBytes;
        var missing = length - _pendingWriteReceivedBytes;
        if (missing == 0)
        {
            return true;
        }

        if ((_streamCursor | (long)missing) % unit != 0 || _streamError is not null)
        {
            return false;
        }

        _carry ??= new byte[Math.Max(Device.LogicalBlockSizeBytes, 4096)];

        // The pipe is filled as far as it goes, then its whole units go to the device in one write.
        // When the socket's pieces fill the pipe before its byte capacity, splice says so (it would
        // block forever otherwise: this thread is also the pipe's reader) and the pipe is emptied.
        var pipe = _payloadPipe ??= KernelPipe.Create(_options.PayloadPipeBytes);
        var inPipe = 0;
        while (missing > 0)
        {
            var moved = socket.SpliceSome(pipe, Math.Min(missing, pipe.CapacityBytes - inPipe));
            if (moved == 0)
            {
                pipe.Discard();
                throw new EndOfStreamException("the peer closed in the middle of a WRITE payload");
            }

            if (moved < 0 && inPipe < unit)
            {
                // Full while holding less than a unit (the socket handed over tiny pieces): finish
                // that unit through memory.
                pipe.Read(_carry.AsSpan(0, inPipe));
                var rest = unit - inPipe;
                if (!socket.ReceiveExactly(_carry.AsSpan(inPipe, rest)))
                {
                    throw new EndOfStreamException("the peer closed in the middle of a WRITE payload");
                }

                missing -= rest;
                _pendingWriteReceivedBytes += rest;
                inPipe = 0;
                WritePiece(_carry.AsSpan(0, unit));
                continue;
            }

            if (moved > 0)
            {
                missing -= moved;
                _pendingWriteReceivedBytes += moved;
                inPipe += moved;
                if (missing > 0 && inPipe < pipe.CapacityBytes)
                {
                    continue;
                }
            }

            var whole = inPipe / unit * unit;
            if (_streamError is null)
            {
                try
                {
                    target.WriteFromPipe(_streamCursor, whole, pipe, forceUnitAccess: false);
                }
                catch (Exception ex) when (ex is StorageException or IOException)
                {
                    RecordStreamError(ex);
                }
            }

            if (_streamError is not null)
            {
                pipe.Discard(); // what the failed write did not take; the rest is still read and dropped
                whole = inPipe;
            }

            _streamCursor += whole;
            inPipe -= whole;
        }

        return true;
    }

    /// <summary>Answers a streamed WRITE: its first device error, or success (after a flush for FUA).</summary>
    private void FinishStreamedWrite(in NbdRequestHeader request)
    {
        if (_streamError is { } failed)
        {
            ReplyError(request, failed.Error, failed.Message);
            return;
        }

        if (FlushIfFua(request))
        {
            ReplyOk(request);
        }
    }

    private static bool TryReadRequestHeader(in ReadOnlySequence<byte> buffer, out NbdRequestHeader header)
    {
        if (buffer.Length < NbdRequestHeader.SizeBytes)
        {
            header = default;
            return false;
        }

        var first = buffer.FirstSpan;
        if (first.Length >= NbdRequestHeader.SizeBytes)
        {
            return NbdRequestHeader.TryRead(first, out header);
        }

        Span<byte> raw = stackalloc byte[NbdRequestHeader.SizeBytes];
        buffer.Slice(0, NbdRequestHeader.SizeBytes).CopyTo(raw);
        return NbdRequestHeader.TryRead(raw, out header);
    }

    /// <summary>
    /// The staging buffer is rented once and kept for the connection; it grows (doubling, keeping the
    /// first <paramref name="preserveBytes"/>) only up to the largest payload actually received.
    /// </summary>
    private byte[] EnsureStaging(int requiredBytes, int preserveBytes)
    {
        var current = _writeStaging;
        if (current is not null && current.Length >= requiredBytes)
        {
            return current;
        }

        var size = Math.Max(requiredBytes, Math.Max(64 * 1024, (current?.Length ?? 0) * 2));
        var grown = ArrayPool<byte>.Shared.Rent(Math.Min(size, Math.Max(requiredBytes, _options.MaxPayloadBytes)));
        if (current is not null)
        {
            current.AsSpan(0, preserveBytes).CopyTo(grown);
            ArrayPool<byte>.Shared.Return(current);
        }

        _writeStaging = grown;
        return grown;
    }
}
