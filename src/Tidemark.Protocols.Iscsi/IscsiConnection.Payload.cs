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
//
// A WRITE's segment (its immediate data, or a Data-Out of a WRITE applied in pieces) on a transport
// that offers a payload source is not received at all: the handler gets the segment as a source
// (IscsiPdu.DataSource) and the device pulls it (IscsiConnection.WritePieces.cs). The source is this
// one segment, so PDUs of other tasks before and after it are handled as ever, and a handler that
// does not write it (the command was refused, failed part-way, or is already over) leaves the rest,
// which is dropped here (IPayloadSource.Skip) so the input stays in step. Opening the source stages
// the segment (from the socket into a pipe, within the transport's payload deadline) and is marked as
// waiting on the initiator, as a receive is. All of it blocks the connection's own thread (its data
// phase runs on one: ProtocolListener), where a receive would block the same way.
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
        IPayloadSource? partial = null;
        if (wireBytes == dataBytes && SourceWanted())
        {
            var source = OpenSource(dataBytes);
            if (source is not null && source.RemainingBytes == dataBytes)
            {
                HandleFromSource(source);
                return;
            }

            partial = source; // the transport stages less than the segment: it is taken into memory
        }
        else if (wireBytes == dataBytes && DataOutDestination(dataBytes) is { } place)
        {
            await ReceiveInPlaceAsync(place, cancellationToken).ConfigureAwait(false);
            return;
        }

        var piece = ArrayPool<byte>.Shared.Rent(wireBytes);
        try
        {
            var staged = partial?.RemainingBytes ?? 0;
            partial?.Fill(piece.AsSpan(0, staged));

            // Marked as waiting on the initiator: one that stops sending in the middle of a segment
            // meets the keepalive deadline, as one that stops between PDUs does.
            Volatile.Write(ref _waitingOnPeerSince, Math.Max(1, Environment.TickCount64));
            try
            {
                await _payload.ReceiveAsync(piece.AsMemory(staged, wireBytes - staged), cancellationToken).ConfigureAwait(false);
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
    /// True when the segment of the PDU whose BHS is in _inHeader is to be written from the payload
    /// source: the immediate data of a plain WRITE of at least SourceWriteBytes, or a Data-Out of a
    /// WRITE applied in pieces, on a connection where sources are possible (no data digest). The
    /// handler decides the rest (a segment it cannot write from the source, it fills into memory).
    /// </summary>
    private bool SourceWanted()
    {
        if (!SourceWritesPossible)
        {
            return false;
        }

        if (BasicHeaderSegment.Is(_inHeader, IscsiOpcode.DataOut))
        {
            return DataOutPdu.TryRead(_inHeader, out var data) && _pending.TryGetValue(data.InitiatorTaskTag, out var pending) && pending.Streamed;
        }

        return BasicHeaderSegment.Is(_inHeader, IscsiOpcode.ScsiCommand)
            && ScsiCommandPdu.TryRead(_inHeader, out var command) && command.Write && !command.Read
            && command.ExpectedDataTransferLengthBytes >= SourceWriteBytes
            && TryParseWrite(_inHeader.AsSpan(ScsiCommandPdu.CdbOffset, ScsiCommandPdu.CdbLengthBytes), out _, out _, out _);
    }

    /// <summary>Opens the payload source for the next <paramref name="dataBytes"/> (null when the transport has none now), marked as waiting on the initiator while it stages them.</summary>
    private IPayloadSource? OpenSource(int dataBytes)
    {
        Volatile.Write(ref _waitingOnPeerSince, Math.Max(1, Environment.TickCount64));
        try
        {
            return _payload.OpenSource(dataBytes);
        }
        finally
        {
            Volatile.Write(ref _waitingOnPeerSince, 0);
            Volatile.Write(ref _lastReceivedAt, Environment.TickCount64);
        }
    }

    /// <summary>Handles the PDU whose data segment is <paramref name="source"/>, then drops what the handler left of it.</summary>
    private void HandleFromSource(IPayloadSource source)
    {
        try
        {
            HandlePduOrReject(new IscsiPdu(_inHeader, source));
        }
        catch (IscsiProtocolException)
        {
            // The Reject goes out and the input is drained: the segment first.
            source.Skip();
            throw;
        }

        source.Skip();
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
