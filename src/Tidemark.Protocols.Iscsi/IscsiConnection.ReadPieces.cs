using System.Buffers.Binary;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

// A plain READ larger than LargeDataSegmentBytes is sent piece by piece (issue 18: iSCSI buffered up
// to 8 MiB per command, and queued as much again in the output before the first byte went out).
// Each Data-In PDU's data is read from the logical unit straight into the output, as a READ (16) of
// its own blocks, and the output is flushed whenever MaxQueuedOutputBytes are queued: a connection
// holds one flush's worth of a READ (plus what the transport has in flight, which it bounds), not
// the command, and the device's bytes are copied once less. Before the first piece the whole
// command's CDB runs once without data, so its checks (range, flags, transfer length, unit
// attention, reservations) refuse it before anything is sent, as the buffered path would.
//
// The PDUs are those the buffered path sends (RFC 7143 11.7: segments of at most the initiator's
// MaxRecvDataSegmentLength, F at each MaxBurstLength, GOOD status collapsed into the last one). A
// piece that fails (a storage error, a reservation taken by another session meanwhile) ends the
// command with that status in a SCSI Response after the Data-In already sent, whose ExpDataSN counts
// them; the initiator takes the status, as it would from a disk that failed part-way. The READ
// stops the handling of the input batch it came in, so the replies of commands behind it follow its
// data. Reads that are not plain (EDTL not the CDB's transfer length, segments or bursts that are not
// whole blocks, a missing LUN) keep the buffered path, so their meaning stays the unit's alone.
public sealed partial class IscsiConnection
{
    // The READ to send in pieces once the input batch it came in has been consumed up to it.
    private readonly byte[] _readCdb = new byte[16];
    private StreamedRead? _streamedRead;

    /// <summary>
    /// Bytes of the connection's own buffer for READ data: the buffered path's, which a plain READ
    /// larger than a large data segment no longer uses (a diagnostic for the held-memory tests).
    /// </summary>
    public int ReadBufferBytes => _dataIn.Length;

    /// <summary>Takes <paramref name="cdb"/> to be sent in pieces when it is a plain READ worth it; false to run it buffered.</summary>
    private bool TryStreamRead(ReadOnlySpan<byte> cdb, uint itt, ulong lunField, uint expected)
    {
        if (expected <= LargeDataSegmentBytes || cdb.Length > _readCdb.Length
            || !ScsiLogicalUnit.TryParseRead(cdb, out _, out var blocks)
            || !_target!.Units.TryGetValue(ScsiTargetCommands.DecodeLun(lunField), out var unit))
        {
            return false;
        }

        var blockBytes = unit.Device.LogicalBlockSizeBytes;
        if (blockBytes <= 0 || (ulong)blocks * (ulong)blockBytes != expected
            || DataInSegmentBytes() < blockBytes || _parameters.MaxBurstBytes % blockBytes != 0)
        {
            return false;
        }

        cdb.CopyTo(_readCdb);
        _streamedRead = new StreamedRead(itt, lunField, cdb.Length, (int)expected, blockBytes);
        return true;
    }

    /// <summary>Largest Data-In segment: the initiator's MaxRecvDataSegmentLength, capped by ours.</summary>
    private int DataInSegmentBytes() => Math.Min(_parameters.InitiatorMaxRecvDataSegmentBytes, _limits.MaxSendDataSegmentBytes);

    /// <summary>Sends the READ taken by <see cref="TryStreamRead"/>: its checks, then its data piece by piece, flushing as it goes.</summary>
    private async ValueTask SendStreamedReadAsync(CancellationToken cancellationToken)
    {
        var read = _streamedRead!.Value;
        _streamedRead = null;
        var check = Run(read.LunField, _readCdb.AsSpan(0, read.CdbLength), []);
        if (check.Status != ScsiStatus.Good)
        {
            SendStatus(read.InitiatorTaskTag, check, (uint)read.ExpectedBytes, 0);
            return;
        }

        var segment = DataInSegmentBytes() / read.BlockBytes * read.BlockBytes;
        var burst = _parameters.MaxBurstBytes;
        var offset = 0;
        var burstUsed = 0;
        uint dataSn = 0;
        while (offset < read.ExpectedBytes)
        {
            var length = Math.Min(Math.Min(segment, read.ExpectedBytes - offset), burst - burstUsed);
            burstUsed += length;
            var final = offset + length == read.ExpectedBytes || burstUsed == burst;
            if (burstUsed == burst)
            {
                burstUsed = 0;
            }

            if (!SendReadPiece(read, check.TransferLengthBytes, offset, length, final, dataSn))
            {
                return;
            }

            dataSn++;
            offset += length;
            if (offset < read.ExpectedBytes && _outputBytes >= _limits.MaxQueuedOutputBytes)
            {
                // The bound on what this READ holds: the queued pieces go out before the next is read.
                if (await FlushOutputAsync(cancellationToken).ConfigureAwait(false) || _closing)
                {
                    return; // the initiator is gone or the connection is ending: the rest would go nowhere
                }
            }
        }
    }

    /// <summary>
    /// Reads one Data-In PDU's data from the unit into the output and commits the PDU (with GOOD
    /// status when it is the last); on failure sends the SCSI Response instead and returns false.
    /// </summary>
    private bool SendReadPiece(in StreamedRead read, long transferLength, int offset, int length, bool final, uint dataSn)
    {
        var cdb = _readCdb.AsSpan(0, read.CdbLength);
        _ = ScsiLogicalUnit.TryParseRead(cdb, out var lba, out _);
        Span<byte> piece = stackalloc byte[16];
        piece[0] = ScsiOpcode.Read16;

        // DPO and FUA keep their places in READ (16); READ (6) has neither (RDPROTECT was checked zero).
        piece[1] = cdb[0] == ScsiOpcode.Read6 ? (byte)0 : cdb[1];
        BinaryPrimitives.WriteUInt64BigEndian(piece[2..], lba + (ulong)(offset / read.BlockBytes));
        BinaryPrimitives.WriteUInt32BigEndian(piece[10..], (uint)(length / read.BlockBytes));

        var headerDigest = _parameters.HeaderDigest && _fullFeature;
        var dataDigest = _parameters.DataDigest && _fullFeature;
        var pdu = PduWriter.Reserve(Output, headerDigest, dataDigest, length);
        var result = Run(read.LunField, piece, [], pdu.Slice(PduWriter.DataOffset(headerDigest), length));
        if (result.Status != ScsiStatus.Good || result.DataInBytes != length)
        {
            // Nothing of this piece is committed; the status follows the Data-In already sent.
            SendStatus(read.InitiatorTaskTag, result with { TransferLengthBytes = transferLength }, (uint)read.ExpectedBytes, dataSn);
            return false;
        }

        var last = offset + length == read.ExpectedBytes;
        new DataInPdu(final, last, false, false, (byte)ScsiStatus.Good, length, read.LunField, read.InitiatorTaskTag, Sequence, dataSn, (uint)offset, 0)
            .WriteTo(_outHeader);
        if (last)
        {
            _statSn++;
        }

        _outputBytes += PduWriter.Commit(Output, pdu, headerDigest, dataDigest, _outHeader, length);
        _outputPending = true;
        return true;
    }

    /// <summary>A READ to send in pieces; its CDB is in _readCdb.</summary>
    private readonly record struct StreamedRead(uint InitiatorTaskTag, ulong LunField, int CdbLength, int ExpectedBytes, int BlockBytes);
}
