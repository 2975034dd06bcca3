using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

// Large data segments (Data-Out, immediate data) come through the connection's payload feature, as
// NBD's WRITE payloads do (docs/adr/0010-protocol-transport.md): the header is parsed from the input
// pipe, then the data segment is received into a pooled piece, straight from the socket where the
// transport can, instead of accumulating in the pipe until the whole PDU is there. The piece is handed
// to the ordinary PDU handler, which copies it into the command's buffer (or writes it, see
// IscsiConnection.WritePieces.cs) and gives it back: a connection holds at most one such piece
// (MaxRecvDataSegmentLength) beside its commands' buffers.
public sealed partial class IscsiConnection
{
    /// <summary>
    /// A data segment at least this large that is not all in the input yet is taken through the
    /// payload feature. Smaller ones (a 4 KiB write's immediate data) stay on the buffered path: they
    /// usually arrive whole with their header, and a separate receive would cost more than the copy.
    /// </summary>
    private const int LargeDataSegmentBytes = 64 * 1024;

    private int _largeDataBytes;
    private long _receivedInPlaceBytes;

    /// <summary>Data-Out bytes received straight into their command's buffer (see <see cref="DataOutDestination"/>), for tests and diagnostics.</summary>
    public long DataReceivedInPlaceBytes => Interlocked.Read(ref _receivedInPlaceBytes);

    private enum InputStop
    {
        /// <summary>Every complete PDU was handled; the loop reads more.</summary>
        NeedMore,

        /// <summary>Enough output is queued: flush before handling more.</summary>
        OutputFull,

        /// <summary>The next PDU's data segment is to be taken through the payload feature.</summary>
        LargeDataSegment,

        /// <summary>A READ is to be sent in pieces before the PDUs behind it are handled.</summary>
        StreamedRead,
    }

    /// <summary>Receives the data segment (padding and digest with it) of the PDU whose BHS is in _inHeader, and handles the PDU.</summary>
    private async ValueTask ReceiveLargePduAsync(CancellationToken cancellationToken)
    {
        var dataBytes = _largeDataBytes;
        var dataDigest = _framing.DataDigest;
        var wireBytes = BasicHeaderSegment.PaddedLength(dataBytes) + (dataDigest ? 4 : 0);
        if (wireBytes == dataBytes && DataOutDestination(dataBytes) is { } place)
        {
            await ReceiveInPlaceAsync(place, cancellationToken).ConfigureAwait(false);
            return;
        }

        var piece = ArrayPool<byte>.Shared.Rent(wireBytes);
        try
        {
            // Marked as waiting on the initiator: one that stops sending in the middle of a segment
            // meets the keepalive deadline, as one that stops between PDUs does.
            Volatile.Write(ref _waitingOnPeerSince, Math.Max(1, Environment.TickCount64));
            try
            {
                await _payload.ReceiveAsync(piece.AsMemory(0, wireBytes), cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Volatile.Write(ref _waitingOnPeerSince, 0);
            }

            Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);
            var valid = PduReader.DataDigestMatches(piece.AsSpan(0, wireBytes), dataBytes, dataDigest);
            HandlePduOrReject(new IscsiPdu(_inHeader, ReadOnlySequence<byte>.Empty, new ReadOnlySequence<byte>(piece, 0, dataBytes), valid));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(piece);
        }
    }

    /// <summary>
    /// Where a Data-Out's data can be received straight into its command's buffer: a command buffered
    /// whole (not applied in pieces) whose Data-Out lies within the range it may take, with no padding
    /// and no data digest on the wire (the segment is the data alone). Received there, the data is not
    /// copied again from a piece (one 1 MiB copy fewer per 1 MiB WRITE). Anything else (an unknown
    /// task, a wrong transfer tag, data out of range) takes the ordinary path, whose checks answer it.
    /// </summary>
    private Memory<byte>? DataOutDestination(int dataBytes)
    {
        if (!BasicHeaderSegment.Is(_inHeader, IscsiOpcode.DataOut)
            || !DataOutPdu.TryRead(_inHeader, out var data)
            || !_pending.TryGetValue(data.InitiatorTaskTag, out var pending)
            || pending.Streamed || pending.Buffer is null)
        {
            return null;
        }

        var solicited = data.TargetTransferTag != BasicHeaderSegment.ReservedTag;
        var limit = solicited ? pending.ExpectedBytes : pending.UnsolicitedEnd;
        if ((solicited && (!pending.Granted || data.TargetTransferTag != pending.TargetTransferTag))
            || data.BufferOffset > (uint)limit || dataBytes > limit - (int)data.BufferOffset
            || (long)data.BufferOffset + dataBytes > pending.Buffer.Length)
        {
            return null;
        }

        return pending.Buffer.AsMemory((int)data.BufferOffset, dataBytes);
    }

    /// <summary>Receives a Data-Out's data into <paramref name="place"/> (see <see cref="DataOutDestination"/>) and handles the PDU, whose data is then already where it goes.</summary>
    private async ValueTask ReceiveInPlaceAsync(Memory<byte> place, CancellationToken cancellationToken)
    {
        Volatile.Write(ref _waitingOnPeerSince, Math.Max(1, Environment.TickCount64));
        try
        {
            await _payload.ReceiveAsync(place, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Volatile.Write(ref _waitingOnPeerSince, 0);
        }

        Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);
        Interlocked.Add(ref _receivedInPlaceBytes, place.Length);
        HandlePduOrReject(new IscsiPdu(_inHeader, ReadOnlySequence<byte>.Empty, new ReadOnlySequence<byte>(place), true));
    }
}
