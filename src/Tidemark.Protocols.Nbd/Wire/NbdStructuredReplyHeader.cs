using System.Buffers.Binary;

namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>
/// proto.md "Structured reply chunk message": 20 bytes, followed by
/// <see cref="PayloadLengthBytes"/> bytes whose layout depends on <see cref="Type"/>.
/// </summary>
public readonly record struct NbdStructuredReplyHeader(NbdReplyFlags Flags, NbdReplyType Type, ulong Cookie, uint PayloadLengthBytes)
{
    public const int SizeBytes = 20;

    public static bool TryRead(ReadOnlySpan<byte> source, out NbdStructuredReplyHeader header, out uint magic)
    {
        if (source.Length < SizeBytes)
        {
            header = default;
            magic = 0;
            return false;
        }

        magic = BinaryPrimitives.ReadUInt32BigEndian(source);
        header = new NbdStructuredReplyHeader(
            (NbdReplyFlags)BinaryPrimitives.ReadUInt16BigEndian(source[4..]),
            (NbdReplyType)BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]));
        return true;
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.StructuredReply);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Type);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], PayloadLengthBytes);
    }
}
