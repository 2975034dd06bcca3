using System.Buffers.Binary;

namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>
/// proto.md "Fixed newstyle negotiation": the header of every option reply (magic 0x3e889045565a9),
/// followed by <see cref="DataLengthBytes"/> bytes of reply data.
/// </summary>
public readonly record struct NbdOptionReplyHeader(NbdOptionType Option, NbdOptionReplyType ReplyType, uint DataLengthBytes)
{
    public const int SizeBytes = 20;

    public static bool TryRead(ReadOnlySpan<byte> source, out NbdOptionReplyHeader header, out ulong magic)
    {
        if (source.Length < SizeBytes)
        {
            header = default;
            magic = 0;
            return false;
        }

        magic = BinaryPrimitives.ReadUInt64BigEndian(source);
        header = new NbdOptionReplyHeader(
            (NbdOptionType)BinaryPrimitives.ReadUInt32BigEndian(source[8..]),
            (NbdOptionReplyType)BinaryPrimitives.ReadUInt32BigEndian(source[12..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]));
        return true;
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, NbdMagic.OptionReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], (uint)Option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], (uint)ReplyType);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], DataLengthBytes);
    }
}
