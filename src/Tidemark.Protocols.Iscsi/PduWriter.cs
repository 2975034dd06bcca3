using System.Buffers;
using System.Buffers.Binary;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

/// <summary>Frames outgoing PDUs straight into the connection's output buffer: BHS, digests, data, padding.</summary>
internal static class PduWriter
{
    /// <summary>
    /// Reserves room for a whole PDU, lets <paramref name="writeHeader"/> fill the BHS (its DataSegmentLength
    /// must equal <paramref name="data"/>'s length), then appends the data and digests and commits it.
    /// Returns the bytes written.
    /// </summary>
    public static int Write(IBufferWriter<byte> output, bool headerDigest, bool dataDigest, ReadOnlySpan<byte> bhs, ReadOnlySpan<byte> data)
    {
        var padded = BasicHeaderSegment.PaddedLength(data.Length);
        var total = BasicHeaderSegment.LengthBytes + (headerDigest ? 4 : 0) + padded + (dataDigest && data.Length > 0 ? 4 : 0);
        var span = output.GetSpan(total);
        bhs[..BasicHeaderSegment.LengthBytes].CopyTo(span);
        var p = BasicHeaderSegment.LengthBytes;
        if (headerDigest)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span[p..], Crc32C.Compute(span[..BasicHeaderSegment.LengthBytes]));
            p += 4;
        }

        data.CopyTo(span[p..]);
        span.Slice(p + data.Length, padded - data.Length).Clear();
        if (dataDigest && data.Length > 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(span[(p + padded)..], Crc32C.Compute(span.Slice(p, padded)));
            p += 4;
        }

        output.Advance(p + padded);
        return p + padded;
    }

    /// <summary>Where a PDU's data segment starts after its BHS (and header digest).</summary>
    public static int DataOffset(bool headerDigest) => BasicHeaderSegment.LengthBytes + (headerDigest ? 4 : 0);

    /// <summary>
    /// Reserves room for a whole PDU whose data segment of <paramref name="dataLength"/> bytes (a
    /// multiple of 4: no padding) is to be filled in place, at <see cref="DataOffset"/>: a READ's data
    /// goes from the device straight into the output instead of through a buffer of its own. Nothing
    /// is committed until <see cref="Commit"/>; a PDU that is not committed is not sent.
    /// </summary>
    public static Span<byte> Reserve(IBufferWriter<byte> output, bool headerDigest, bool dataDigest, int dataLength)
    {
        if ((dataLength & 3) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(dataLength), "a data segment filled in place is a multiple of 4 bytes");
        }

        return output.GetSpan(DataOffset(headerDigest) + dataLength + (dataDigest && dataLength > 0 ? 4 : 0));
    }

    /// <summary>Writes the BHS and digests around the data filled in <paramref name="pdu"/> (from <see cref="Reserve"/>) and commits it.</summary>
    public static int Commit(IBufferWriter<byte> output, Span<byte> pdu, bool headerDigest, bool dataDigest, ReadOnlySpan<byte> bhs, int dataLength)
    {
        bhs[..BasicHeaderSegment.LengthBytes].CopyTo(pdu);
        var p = BasicHeaderSegment.LengthBytes;
        if (headerDigest)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(pdu[p..], Crc32C.Compute(pdu[..BasicHeaderSegment.LengthBytes]));
            p += 4;
        }

        p += dataLength;
        if (dataDigest && dataLength > 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(pdu[p..], Crc32C.Compute(pdu.Slice(p - dataLength, dataLength)));
            p += 4;
        }

        output.Advance(p);
        return p;
    }
}
