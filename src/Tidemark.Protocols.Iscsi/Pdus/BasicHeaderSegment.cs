using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>The 48 raw bytes of a Basic Header Segment, held inline (no allocation).</summary>
[InlineArray(BasicHeaderSegment.LengthBytes)]
public struct BhsBytes
{
    private byte _element0;
}

/// <summary>
/// RFC 7143 11.2.1: the fields every BHS has. Opcode-specific fields are read by the PDU structs in
/// this folder; all of them are big-endian ("network byte order", RFC 7143 11.1).
/// </summary>
public readonly record struct BasicHeaderSegment(
    IscsiOpcode Opcode,
    bool Immediate,
    bool Final,
    int TotalAhsLengthWords,
    int DataSegmentLengthBytes,
    ulong Lun,
    uint InitiatorTaskTag)
{
    public const int LengthBytes = 48;

    /// <summary>RFC 7143 11.2.1.3: DataSegmentLength is 24 bits.</summary>
    public const int MaxDataSegmentLengthBytes = 0xFF_FFFF;

    /// <summary>Reserved tag value (RFC 7143 11.2.1.8).</summary>
    public const uint ReservedTag = 0xFFFF_FFFF;

    public static bool TryRead(ReadOnlySpan<byte> source, out BasicHeaderSegment header)
    {
        if (source.Length < LengthBytes)
        {
            header = default;
            return false;
        }

        header = new BasicHeaderSegment(
            (IscsiOpcode)(source[0] & 0x3F),
            (source[0] & 0x40) != 0,
            (source[1] & 0x80) != 0,
            source[4],
            ReadDataSegmentLength(source),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]));
        return true;
    }

    /// <summary>RFC 7143 11.2.1.3: bytes 5-7.</summary>
    public static int ReadDataSegmentLength(ReadOnlySpan<byte> bhs) => (bhs[5] << 16) | (bhs[6] << 8) | bhs[7];

    /// <summary>RFC 7143 11.2: the data segment is padded to a multiple of 4 bytes.</summary>
    public static int PaddedLength(int lengthBytes) => (lengthBytes + 3) & ~3;

    /// <summary>Clears the BHS and writes the fields common to every PDU.</summary>
    internal static void WriteCommon(Span<byte> bhs, IscsiOpcode opcode, bool immediate, byte flags, int dataSegmentLengthBytes, ulong lun, uint initiatorTaskTag)
    {
        bhs[..LengthBytes].Clear();
        bhs[0] = (byte)((byte)opcode | (immediate ? 0x40 : 0));
        bhs[1] = flags;
        bhs[5] = (byte)(dataSegmentLengthBytes >> 16);
        bhs[6] = (byte)(dataSegmentLengthBytes >> 8);
        bhs[7] = (byte)dataSegmentLengthBytes;
        BinaryPrimitives.WriteUInt64BigEndian(bhs[8..], lun);
        BinaryPrimitives.WriteUInt32BigEndian(bhs[16..], initiatorTaskTag);
    }

    internal static uint U32(ReadOnlySpan<byte> bhs, int offset) => BinaryPrimitives.ReadUInt32BigEndian(bhs[offset..]);

    internal static void U32(Span<byte> bhs, int offset, uint value) => BinaryPrimitives.WriteUInt32BigEndian(bhs[offset..], value);

    internal static ulong U64(ReadOnlySpan<byte> bhs, int offset) => BinaryPrimitives.ReadUInt64BigEndian(bhs[offset..]);

    internal static ushort U16(ReadOnlySpan<byte> bhs, int offset) => BinaryPrimitives.ReadUInt16BigEndian(bhs[offset..]);

    internal static void U16(Span<byte> bhs, int offset, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(bhs[offset..], value);

    internal static bool Is(ReadOnlySpan<byte> bhs, IscsiOpcode opcode) => bhs.Length >= LengthBytes && (bhs[0] & 0x3F) == (byte)opcode;
}

/// <summary>Sequence numbers shared by every target-to-initiator PDU that carries them (RFC 7143 11.2.2).</summary>
public readonly record struct TargetSequence(uint StatSN, uint ExpCmdSN, uint MaxCmdSN);
