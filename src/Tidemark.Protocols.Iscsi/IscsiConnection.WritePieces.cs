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
// one piece are buffered and run once, exactly as before.
public sealed partial class IscsiConnection
{
    /// <summary>
    /// The piece size when the command is a plain WRITE worth applying in pieces on a unit that
    /// exists, else 0 (buffer it whole). Anything unusual (EDTL not the CDB's transfer length,
    /// WRITE AND VERIFY, a missing LUN) is buffered, so its meaning stays the unit's alone.
    /// </summary>
    private int WritePieceBytesFor(ReadOnlySpan<byte> cdb, ulong lunField, uint expected, int unsolicitedEnd)
    {
        var piece = _limits.WritePieceBytes;
        if (piece <= 0 || expected <= (uint)piece || unsolicitedEnd > piece
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

        // Whole blocks per piece, so every piece is a WRITE of its own blocks.
        var whole = piece / blockBytes * blockBytes;
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

    /// <summary>Writes the piece in the buffer unless the command already failed.</summary>
    private void ApplyPiece(PendingCommand pending, int pieceLength)
    {
        if (pending.DataSequenceError || pending.Failure is not null)
        {
            return;
        }

        var cdb = pending.Cdb.AsSpan(0, pending.CdbLength);
        if (!pending.Checked)
        {
            // The whole command's checks, without data: the unit writes only the data it is given.
            pending.Checked = true;
            var check = Run(pending.LunField, cdb, []);
            if (check.Status != ScsiStatus.Good)
            {
                pending.Failure = Keep(check);
                return;
            }

            pending.TransferLengthBytes = check.TransferLengthBytes;
        }

        // The command was chosen for pieces because it parsed as a WRITE with blocks x block size = EDTL.
        _ = TryParseWrite(cdb, out var lba, out var blocks, out var flags);
        var blockBytes = pending.ExpectedBytes / (int)Math.Max(1u, blocks);
        Span<byte> piece = stackalloc byte[16];
        piece[0] = ScsiOpcode.Write16;

        // WRPROTECT, DPO and FUA keep their places in WRITE (16); WRITE (6) has none of them.
        piece[1] = cdb[0] == ScsiOpcode.Write6 ? (byte)0 : flags;
        BinaryPrimitives.WriteUInt64BigEndian(piece[2..], lba + (ulong)(pending.PieceStart / blockBytes));
        BinaryPrimitives.WriteUInt32BigEndian(piece[10..], (uint)(pieceLength / blockBytes));
        var result = Run(pending.LunField, piece, pending.Buffer.AsSpan(0, pieceLength));
        if (result.Status != ScsiStatus.Good)
        {
            pending.Failure = Keep(result with { TransferLengthBytes = pending.TransferLengthBytes });
        }
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
