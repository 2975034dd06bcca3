using System.Buffers.Binary;

namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>
/// proto.md "Simple reply message": 16 bytes, followed by the read data for a successful
/// <see cref="NbdCommand.Read"/>.
/// </summary>
public readonly record struct NbdSimpleReplyHeader(NbdError Error, ulong Cookie)
{
    public const int SizeBytes = 16;

    public static bool TryRead(ReadOnlySpan<byte> source, out NbdSimpleReplyHeader header, out uint magic)
    {
        if (source.Length < SizeBytes)
        {
            header = default;
            magic = 0;
            return false;
        }

        magic = BinaryPrimitives.ReadUInt32BigEndian(source);
        header = new NbdSimpleReplyHeader(
            (NbdError)BinaryPrimitives.ReadUInt32BigEndian(source[4..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]));
        return true;
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, NbdMagic.SimpleReply);
        BinaryPrimitives.WriteUInt32BigEndian(destination[4..], (uint)Error);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
    }
}
