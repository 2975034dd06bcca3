using System.Buffers;
using System.Buffers.Binary;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

// A plain WRITE larger than IscsiLimits.WritePieceBytes is applied to the logical unit piece by piece
// as its Data-Out arrives, so it holds one piece instead of its whole data (issue 18: iSCSI buffered
// up to 8 MiB per command). Each piece runs as a WRITE (16) of its own blocks through the logical
// unit, so reservations, write protection and storage errors are the unit's as for any command;
// before the first piece, the whole command's CDB runs once without data to make its checks (range,
// flags, transfer length, unit attention, reservations) refuse it before anything is written, as
// the buffered path would. Data must arrive in order (DataPDUInOrder=Yes and DataSequenceInOrder=Yes
// are always negotiated, RFC 7143 13.19-13.20); a gap or overlap ends the connection.
//
// What a failure means: a piece's error ends the command with that status once the rest of its data
// is in (nothing more is written), and a DataSN error likewise; the pieces written before either
// stay written, as a disk may leave part of a failed WRITE on the medium (SBC-3 4.5). Commands up to
// one piece are buffered and run once, exactly as before, unless their data can come from the
// transport's payload source (below).
//
// Written from the payload source: on a connection whose transport offers one (plain TCP, not TLS or
// an in-memory pipe) and without a data digest, a plain WRITE of at least SourceWriteBytes is applied
// in pieces too, and each large data segment of it (immediate data or Data-Out) that starts a piece
// is not received into memory at all: it runs as a WRITE (16) of its own blocks whose data the device
// pulls from the source (IBlockDevice.WriteFrom; the engine's file store splices it socket -> pipe ->
// file, one copy where memory took two), after the same checks (IscsiConnection.Payload.cs).
public sealed partial class IscsiConnection
{
    /// <summary>
    /// A plain WRITE at least this large is applied in pieces when its data can come from the payload
    /// source. Smaller ones keep the buffered path (a 4 KiB WRITE's data comes whole with its header).
    /// </summary>
    private const int SourceWriteBytes = 128 * 1024;

    private long _writtenFromSourceBytes;

    /// <summary>WRITE data the device pulled straight from the transport's payload source (see the notes above), for tests and diagnostics.</summary>
    public long DataWrittenFromSourceBytes => Interlocked.Read(ref _writtenFromSourceBytes);

    /// <summary>True when a WRITE's data segments can be taken through the payload source: the transport offers one, no data digest.</summary>
    private bool SourceWritesPossible => !_framing.DataDigest && _payload.OffersSource;

    /// <summary>
    /// The piece size when the command is a plain WRITE worth applying in pieces on a unit that
    /// exists, else 0 (buffer it whole). Anything unusual (EDTL not the CDB's transfer length,
    /// WRITE AND VERIFY, a missing LUN) is buffered, so its meaning stays the unit's alone.
    /// </summary>
    private int WritePieceBytesFor(ReadOnlySpan<byte> cdb, ulong lunField, uint expected, int unsolicitedEnd)
    {
        var piece = _limits.WritePieceBytes;
        var fromSource = expected >= SourceWriteBytes && SourceWritesPossible;
        if (piece <= 0 || (expected <= (uint)piece && !fromSource) || unsolicitedEnd > piece
            || !TryParseWrite(cdb, out _, out var blocks, out _)
            || !_target!.Units.TryGetValue(ScsiTargetCommands.DecodeLun(lunField), out var unit))
        {
            return 0;
        }

        var blockBytes = unit.Device.LogicalBlockSizeBytes;
        if (blockBytes <= 0 || (ulong)blocks * (ulong)blockBytes != expected)
        {
            return 0;
        }

        // Whole blocks per piece, so every piece is a WRITE of its own blocks; no larger than the
        // command (one written from the source may be smaller than a piece).
        var whole = (int)Math.Min((uint)piece, expected) / blockBytes * blockBytes;
        return whole > 0 ? whole : 0;
    }

    /// <summary>SBC-3 5.x: LBA, TRANSFER LENGTH and the flags byte of WRITE (6/10/12/16); false for any other opcode.</summary>
    private static bool TryParseWrite(ReadOnlySpan<byte> cdb, out ulong lba, out uint blocks, out byte flags)
    {
        lba = 0;
        blocks = 0;
        flags = 0;
        if (cdb.IsEmpty)
        {
            return false;
        }

        switch (cdb[0])
        {
            case ScsiOpcode.Write6 when cdb.Length >= 6:
                lba = ((uint)(cdb[1] & 0x1F) << 16) | ((uint)cdb[2] << 8) | cdb[3];
                blocks = cdb[4] == 0 ? 256u : cdb[4];
                return true;
            case ScsiOpcode.Write10 when cdb.Length >= 10:
                lba = BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]);
                blocks = BinaryPrimitives.ReadUInt16BigEndian(cdb[7..]);
                flags = cdb[1];
                return true;
            case ScsiOpcode.Write12 when cdb.Length >= 12:
                lba = BinaryPrimitives.ReadUInt32BigEndian(cdb[2..]);
                blocks = BinaryPrimitives.ReadUInt32BigEndian(cdb[6..]);
                flags = cdb[1];
                return true;
            case ScsiOpcode.Write16 when cdb.Length >= 16:
                lba = BinaryPrimitives.ReadUInt64BigEndian(cdb[2..]);
                blocks = BinaryPrimitives.ReadUInt32BigEndian(cdb[10..]);
                flags = cdb[1];
                return true;
            default:
                return false;
        }
    }

    /// <summary>Takes a streamed WRITE's Data-Out at <paramref name="offset"/>, applying each piece it completes.</summary>
    private void ReceivePieces(PendingCommand pending, int offset, in ReadOnlySequence<byte> data)
    {
        if (offset != pending.ReceivedBytes)
        {
            // RFC 7143 13.19-13.20: with DataPDUInOrder=Yes and DataSequenceInOrder=Yes the data comes
            // at continuously increasing offsets; a piece already written cannot take data again.
            IscsiProtocolException.Throw(RejectReason.ProtocolError, $"Data-Out at offset {offset}, expected {pending.ReceivedBytes} (data must arrive in order)");
        }

        var rest = data;
        while (!rest.IsEmpty)
        {
            var pieceLength = Math.Min(pending.GrantBytes, pending.ExpectedBytes - pending.PieceStart);
            var at = pending.ReceivedBytes - pending.PieceStart;
            var take = (int)Math.Min(rest.Length, pieceLength - at);
            rest.Slice(0, take).CopyTo(pending.Buffer.AsSpan(at, take));
            rest = rest.Slice(take);
            pending.ReceivedBytes += take;
            if (at + take == pieceLength)
            {
                ApplyPiece(pending, pieceLength);
                pending.PieceStart += pieceLength;
            }
        }
    }

    /// <summary>Takes a streamed WRITE's data segment at <paramref name="offset"/>: from the payload source when it was left there, else into pieces.</summary>
    private void TakeSegment(PendingCommand pending, int offset, in IscsiPdu pdu)
    {
        if (pdu.DataSource is not { } source)
        {
            ReceivePieces(pending, offset, pdu.Data);
            return;
        }

        var length = source.RemainingBytes;
        if (offset == pending.ReceivedBytes && pending.ReceivedBytes == pending.PieceStart
            && length % BlockBytesOf(pending) == 0 && ReadyForPiece(pending))
        {
            // The segment starts a piece and is whole blocks: the device pulls it (see the notes above).
            var result = RunFrom(pending.LunField, PieceCdb(pending, length, stackalloc byte[16]), source);
            if (result.Status != ScsiStatus.Good)
            {
                pending.Failure = Keep(result with { TransferLengthBytes = pending.TransferLengthBytes });
            }

            // What a refused or failed piece left of the segment is dropped by the caller.
            pending.ReceivedBytes += length;
            pending.PieceStart += length;
            return;
        }

        // Part of a piece is in memory already (a segment ended inside one), or the segment is not
        // whole blocks, or the command failed: the memory path, whose rules cover all of these.
        var rented = ArrayPool<byte>.Shared.Rent(Math.Max(1, length));
        try
        {
            source.Fill(rented.AsSpan(0, length));
            ReceivePieces(pending, offset, new ReadOnlySequence<byte>(rented, 0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Writes the piece in the buffer unless the command already failed.</summary>
    private void ApplyPiece(PendingCommand pending, int pieceLength)
    {
        if (!ReadyForPiece(pending))
        {
            return;
        }

        var result = Run(pending.LunField, PieceCdb(pending, pieceLength, stackalloc byte[16]), pending.Buffer.AsSpan(0, pieceLength));
        if (result.Status != ScsiStatus.Good)
        {
            pending.Failure = Keep(result with { TransferLengthBytes = pending.TransferLengthBytes });
        }
    }

    /// <summary>
    /// False when the command failed (a piece, its checks or a DataSN error): its next piece is not
    /// written. Before its first piece, runs the whole command's checks.
    /// </summary>
    private bool ReadyForPiece(PendingCommand pending)
    {
        if (pending.DataSequenceError || pending.Failure is not null)
        {
            return false;
        }

        if (!pending.Checked)
        {
            // The whole command's checks, without data: the unit writes only the data it is given.
            pending.Checked = true;
            var check = Run(pending.LunField, pending.Cdb.AsSpan(0, pending.CdbLength), []);
            if (check.Status != ScsiStatus.Good)
            {
                pending.Failure = Keep(check);
                return false;
            }

            pending.TransferLengthBytes = check.TransferLengthBytes;
        }

        return true;
    }

    /// <summary>The block size of a streamed WRITE: it was chosen for pieces because it parsed as a WRITE with blocks x block size = EDTL.</summary>
    private static int BlockBytesOf(PendingCommand pending)
    {
        _ = TryParseWrite(pending.Cdb.AsSpan(0, pending.CdbLength), out _, out var blocks, out _);
        return pending.ExpectedBytes / (int)Math.Max(1u, blocks);
    }

    /// <summary>The WRITE (16) of the piece of <paramref name="pieceLength"/> bytes at the command's offset PieceStart, in <paramref name="piece"/>.</summary>
    private static Span<byte> PieceCdb(PendingCommand pending, int pieceLength, Span<byte> piece)
    {
        var cdb = pending.Cdb.AsSpan(0, pending.CdbLength);
        _ = TryParseWrite(cdb, out var lba, out _, out var flags);
        var blockBytes = BlockBytesOf(pending);
        piece.Clear();
        piece[0] = ScsiOpcode.Write16;

        // WRPROTECT, DPO and FUA keep their places in WRITE (16); WRITE (6) has none of them.
        piece[1] = cdb[0] == ScsiOpcode.Write6 ? (byte)0 : flags;
        BinaryPrimitives.WriteUInt64BigEndian(piece[2..], lba + (ulong)(pending.PieceStart / blockBytes));
        BinaryPrimitives.WriteUInt32BigEndian(piece[10..], (uint)(pieceLength / blockBytes));
        return piece;
    }

    /// <summary>A result with its own copy of the sense data (the sense buffer is reused by the next command).</summary>
    private ScsiFailure Keep(in ScsiResult result) =>
        new(result.Status, _senseSegment.AsSpan(2, result.SenseBytes).ToArray(), result.TransferLengthBytes);

    /// <summary>Ends a streamed WRITE whose data is all in: its failure, or GOOD with its checks' transfer length.</summary>
    private void CompleteStreamed(PendingCommand pending)
    {
        if (pending.Failure is { } failure)
        {
            failure.Sense.CopyTo(_senseSegment.AsSpan(2));
            SendStatus(pending.InitiatorTaskTag, new ScsiResult(failure.Status, 0, failure.Sense.Length, failure.TransferLengthBytes), (uint)pending.ExpectedBytes, 0);
            return;
        }

        SendStatus(pending.InitiatorTaskTag, new ScsiResult(ScsiStatus.Good, 0, 0, pending.TransferLengthBytes), (uint)pending.ExpectedBytes, 0);
    }
}
