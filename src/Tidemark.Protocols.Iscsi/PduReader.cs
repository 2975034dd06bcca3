using System.Buffers;
using System.Buffers.Binary;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// RFC 7143 11.2 framing: BHS, AHS, header digest, data segment padded to 4 bytes, data digest.
/// Never throws on partial input (returns false until the PDU is whole); throws
/// <see cref="IscsiProtocolException"/> for a length over the caps or a header digest mismatch,
/// checked from the BHS before the rest is buffered.
/// </summary>
public static class PduReader
{
    private const int DigestBytes = 4;

    public static bool TryReadPdu(in ReadOnlySequence<byte> buffer, in FramingSettings settings, Span<byte> headerScratch, out IscsiPdu pdu, out SequencePosition consumed)
    {
        pdu = default;
        consumed = buffer.Start;
        if (buffer.Length < BasicHeaderSegment.LengthBytes)
        {
            return false;
        }

        if (headerScratch.Length < BasicHeaderSegment.LengthBytes)
        {
            throw new ArgumentException("the header scratch must hold a whole BHS", nameof(headerScratch));
        }

        var bhs = headerScratch[..BasicHeaderSegment.LengthBytes];
        buffer.Slice(0, BasicHeaderSegment.LengthBytes).CopyTo(bhs);

        // RFC 7143 11.2.1.5: TotalAHSLength is in 4-byte words.
        var ahsBytes = bhs[4] * 4;
        var dataBytes = BasicHeaderSegment.ReadDataSegmentLength(bhs);
        if (ahsBytes > settings.MaxAhsBytes)
        {
            IscsiProtocolException.Throw(RejectReason.ProtocolError, $"AHS of {ahsBytes} bytes exceeds the {settings.MaxAhsBytes}-byte limit");
        }

        if (dataBytes > settings.MaxDataSegmentBytes)
        {
            IscsiProtocolException.Throw(RejectReason.ProtocolError, $"data segment of {dataBytes} bytes exceeds MaxRecvDataSegmentLength {settings.MaxDataSegmentBytes}");
        }

        var headerDigest = settings.HeaderDigest ? DigestBytes : 0;
        var dataDigest = settings.DataDigest && dataBytes > 0 ? DigestBytes : 0;
        long total = BasicHeaderSegment.LengthBytes + ahsBytes + headerDigest + BasicHeaderSegment.PaddedLength(dataBytes) + dataDigest;
        if (buffer.Length < total)
        {
            return false;
        }

        var ahs = buffer.Slice(BasicHeaderSegment.LengthBytes, ahsBytes);
        if (settings.HeaderDigest)
        {
            // RFC 7143 13.1: the header digest covers the BHS and any AHS.
            var crc = Crc32C.Append(Crc32C.Start, bhs);
            foreach (var segment in ahs)
            {
                crc = Crc32C.Append(crc, segment.Span);
            }

            if (Crc32C.Finish(crc) != ReadDigest(buffer.Slice(BasicHeaderSegment.LengthBytes + ahsBytes, DigestBytes)))
            {
                // RFC 7143 7.8: a header digest error leaves the PDU boundary unknown; at ERL 0 the connection ends.
                IscsiProtocolException.Throw(RejectReason.DataDigestError, "header digest mismatch");
            }
        }

        var dataStart = BasicHeaderSegment.LengthBytes + ahsBytes + headerDigest;
        var padded = BasicHeaderSegment.PaddedLength(dataBytes);
        var data = buffer.Slice(dataStart, dataBytes);
        var digestValid = true;
        if (dataDigest > 0)
        {
            // The data digest covers the data and its padding.
            var crc = Crc32C.Start;
            foreach (var segment in buffer.Slice(dataStart, padded))
            {
                crc = Crc32C.Append(crc, segment.Span);
            }

            digestValid = Crc32C.Finish(crc) == ReadDigest(buffer.Slice(dataStart + padded, DigestBytes));
        }

        pdu = new IscsiPdu(bhs, ahs, data, digestValid);
        consumed = buffer.GetPosition(total);
        return true;
    }

    /// <summary>
    /// True when the buffer starts with the header of a PDU whose data segment is at least
    /// <paramref name="minDataBytes"/> and not yet all buffered, and which has no AHS: the caller
    /// then takes the data segment through the payload feature (straight from the socket) instead of
    /// buffering it in the pipe. The BHS is copied to <paramref name="headerScratch"/>; the same caps and
    /// header digest check as <see cref="TryReadPdu"/> apply.
    /// </summary>
    public static bool TryReadLargePduHeader(in ReadOnlySequence<byte> buffer, in FramingSettings settings, Span<byte> headerScratch, int minDataBytes, out int headerBytes, out int dataBytes)
    {
        headerBytes = 0;
        dataBytes = 0;
        var headerDigest = settings.HeaderDigest ? DigestBytes : 0;
        if (buffer.Length < BasicHeaderSegment.LengthBytes + headerDigest)
        {
            return false;
        }

        var bhs = headerScratch[..BasicHeaderSegment.LengthBytes];
        buffer.Slice(0, BasicHeaderSegment.LengthBytes).CopyTo(bhs);
        var length = BasicHeaderSegment.ReadDataSegmentLength(bhs);
        if (bhs[4] != 0 || length < minDataBytes)
        {
            return false;
        }

        var dataDigest = settings.DataDigest ? DigestBytes : 0;
        if (buffer.Length >= BasicHeaderSegment.LengthBytes + headerDigest + BasicHeaderSegment.PaddedLength(length) + dataDigest)
        {
            return false; // all here already: the ordinary path takes it from the buffer
        }

        if (length > settings.MaxDataSegmentBytes)
        {
            IscsiProtocolException.Throw(RejectReason.ProtocolError, $"data segment of {length} bytes exceeds MaxRecvDataSegmentLength {settings.MaxDataSegmentBytes}");
        }

        if (settings.HeaderDigest
            && Crc32C.Finish(Crc32C.Append(Crc32C.Start, bhs)) != ReadDigest(buffer.Slice(BasicHeaderSegment.LengthBytes, DigestBytes)))
        {
            IscsiProtocolException.Throw(RejectReason.DataDigestError, "header digest mismatch");
        }

        headerBytes = BasicHeaderSegment.LengthBytes + headerDigest;
        dataBytes = length;
        return true;
    }

    /// <summary>
    /// Checks a data segment received apart from its header: <paramref name="received"/> is the data,
    /// its padding and (when <paramref name="dataDigest"/>) the digest, as they came from the wire.
    /// </summary>
    public static bool DataDigestMatches(ReadOnlySpan<byte> received, int dataBytes, bool dataDigest)
    {
        if (!dataDigest)
        {
            return true;
        }

        var padded = BasicHeaderSegment.PaddedLength(dataBytes);
        return Crc32C.Finish(Crc32C.Append(Crc32C.Start, received[..padded])) == BinaryPrimitives.ReadUInt32LittleEndian(received[padded..]);
    }

    private static uint ReadDigest(ReadOnlySequence<byte> digest)
    {
        // libiscsi and Linux send the CRC least significant byte first.
        Span<byte> b = stackalloc byte[DigestBytes];
        digest.CopyTo(b);
        return BinaryPrimitives.ReadUInt32LittleEndian(b);
    }
}
