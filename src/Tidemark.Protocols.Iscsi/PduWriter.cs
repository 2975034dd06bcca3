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
}
