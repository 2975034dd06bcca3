using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// proto.md "Transmission": the receive loop and request framing. Every complete request in the
// receive buffer is handled in turn and its reply queued; the queue is sent once no complete request
// is left (or when it grows past MaxUnflushedReplyBytes). A WRITE leaves the batch: its payload is
// taken through the payload feature (NbdConnection.Writes.cs) and the loop goes on with what the
// input still holds, without waiting for the socket.
public sealed partial class NbdConnection
{
    private NbdExport? _export;
    private IBlockDevice? _device;
    private NbdTransmissionFlags _transmissionFlags;
    private bool _blockStatusEnabled;

    private enum Step
    {
        NeedMoreData,
        FlushNeeded,
        Write,
        Disconnect,
    }

    private async ValueTask<NbdSessionEnd> TransmitAsync(CancellationToken cancellationToken)
    {
        StartReadWorkersIfPreferred();
        ReadResult? held = null;
        while (true)
        {
            ReadResult result;
            if (held is { } next)
            {
                result = next;
                held = null;
            }
            else
            {
                // About to wait for input: the client may be waiting for what was answered.
                if (!await FlushOwnedAsync(cancellationToken))
                {
                    return StoppedSendingEnd();
                }

                result = await _input.ReadAsync(cancellationToken);
            }

            if (result.IsCanceled)
            {
                return AbortedEnd();
            }

            var buffer = result.Buffer;
            Step step;
            NbdRequestHeader write = default;
            try
            {
                step = ProcessRequests(ref buffer, out write);
                while (step == Step.FlushNeeded)
                {
                    if (!await FlushOwnedAsync(cancellationToken))
                    {
                        _input.AdvanceTo(buffer.Start, buffer.End);
                        return StoppedSendingEnd();
                    }

                    step = ProcessRequests(ref buffer, out write);
                }
            }
            catch (NbdProtocolViolationException)
            {
                _input.AdvanceTo(buffer.Start, buffer.End);
                throw;
            }

            if (step == Step.Write)
            {
                // Only the header is consumed: the payload feature delivers the payload from here on.
                _input.AdvanceTo(buffer.Start);
                try
                {
                    held = await ReceiveWriteAsync(write, cancellationToken);
                }
                catch (EndOfStreamException)
                {
                    return new NbdSessionEnd(NbdSessionEndReason.TruncatedFrame, "the peer closed in the middle of a WRITE payload");
                }
                catch (PayloadSourceException ex) when (ex.PeerClosed)
                {
                    return new NbdSessionEnd(NbdSessionEndReason.TruncatedFrame, "the peer closed in the middle of a WRITE payload");
                }

                continue;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (step == Step.Disconnect)
            {
                // proto.md NBD_CMD_DISC: every earlier request is answered before the close.
                TakeOutputBack();
                await TryFlushAsync(cancellationToken);
                return new NbdSessionEnd(NbdSessionEndReason.ClientDisconnected);
            }

            if (result.IsCompleted)
            {
                TakeOutputBack();
                await TryFlushAsync(cancellationToken);
                return buffer.IsEmpty
                    ? new NbdSessionEnd(NbdSessionEndReason.PeerClosed)
                    : new NbdSessionEnd(NbdSessionEndReason.TruncatedFrame, "the peer closed in the middle of a request");
            }
        }
    }

    /// <summary>
    /// Handles every complete request at the start of <paramref name="buffer"/> and slices it past
    /// them, up to a WRITE, whose header it slices off and returns in <paramref name="write"/>. Never
    /// throws on partial input; throws <see cref="NbdProtocolViolationException"/> on a request that
    /// cannot be framed (bad magic, WRITE payload over the cap).
    /// </summary>
    private Step ProcessRequests(ref ReadOnlySequence<byte> buffer, out NbdRequestHeader write)
    {
        write = default;
        while (true)
        {
            // While a worker owns the output it flushes at this size itself.
            if (!_outputHandedOff && !_readsHandedOff && _unflushedBytes >= _options.MaxUnflushedReplyBytes)
            {
                return Step.FlushNeeded;
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

                buffer = buffer.Slice(NbdRequestHeader.SizeBytes);
                write = header;
                return Step.Write;
            }

            if (header.Command == NbdCommand.Read && TryStartRead(header, buffer))
            {
                // Started without waiting (NbdConnection.Reads.cs); its reply leaves when it is read.
                buffer = buffer.Slice(NbdRequestHeader.SizeBytes);
                continue;
            }

            // Every other request sees every earlier write and read applied and answered.
            TakeOutputBack();
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
}
