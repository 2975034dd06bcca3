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

                var length = (int)header.LengthBytes;
                var payload = buffer.Slice(NbdRequestHeader.SizeBytes);
                if (payload.Length >= length)
                {
                    payload = payload.Slice(0, length);
                    if (payload.IsSingleSegment)
                    {
                        HandleWrite(header, payload.FirstSpan);
                    }
                    else
                    {
                        var staging = EnsureStaging(length, preserveBytes: 0);
                        payload.CopyTo(staging);
                        HandleWrite(header, staging.AsSpan(0, length));
                    }

                    buffer = buffer.Slice(payload.End);
                    continue;
                }

                _writeInProgress = true;
                _pendingWrite = header;
                _pendingWriteReceivedBytes = 0;
                buffer = payload;
                continue;
            }

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

    /// <summary>Copies what has arrived of a streamed WRITE payload; true once it was handled.</summary>
    private bool ContinueWritePayload(ref ReadOnlySequence<byte> buffer)
    {
        var length = (int)_pendingWrite.LengthBytes;
        var missing = length - _pendingWriteReceivedBytes;
        var available = (int)Math.Min(buffer.Length, missing);

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
