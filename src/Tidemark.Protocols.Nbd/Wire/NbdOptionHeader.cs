using System.Buffers.Binary;

namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>
/// proto.md "Newstyle negotiation": an option request header sent by the client,
/// followed by <see cref="DataLengthBytes"/> bytes of option data.
/// </summary>
public readonly record struct NbdOptionHeader(ulong Magic, NbdOptionType Option, uint DataLengthBytes)
{
    public const int SizeBytes = 16;

    public static bool TryRead(ReadOnlySpan<byte> source, out NbdOptionHeader header)
    {
        if (source.Length < SizeBytes)
        {
            header = default;
            return false;
        }

        header = new NbdOptionHeader(
            BinaryPrimitives.ReadUInt64BigEndian(source),
            (NbdOptionType)BinaryPrimitives.ReadUInt32BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[12..]));
        return true;
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, Magic);
        BinaryPrimitives.WriteUInt32BigEndian(destination[8..], (uint)Option);
        BinaryPrimitives.WriteUInt32BigEndian(destination[12..], DataLengthBytes);
    }
}
