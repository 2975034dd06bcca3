using System.Buffers.Binary;

namespace Tidemark.Protocols.Nbd.Wire;

/// <summary>
/// proto.md "Request message": 28 bytes; an <see cref="NbdCommand.Write"/> is followed by
/// <see cref="LengthBytes"/> bytes of data.
/// </summary>
public readonly record struct NbdRequestHeader(
    uint Magic,
    NbdCommandFlags Flags,
    NbdCommand Command,
    ulong Cookie,
    ulong OffsetBytes,
    uint LengthBytes)
{
    public const int SizeBytes = 28;

    public static bool TryRead(ReadOnlySpan<byte> source, out NbdRequestHeader header)
    {
        if (source.Length < SizeBytes)
        {
            header = default;
            return false;
        }

        header = new NbdRequestHeader(
            BinaryPrimitives.ReadUInt32BigEndian(source),
            (NbdCommandFlags)BinaryPrimitives.ReadUInt16BigEndian(source[4..]),
            (NbdCommand)BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[8..]),
            BinaryPrimitives.ReadUInt64BigEndian(source[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[24..]));
        return true;
    }

    public void WriteTo(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt32BigEndian(destination, Magic);
        BinaryPrimitives.WriteUInt16BigEndian(destination[4..], (ushort)Flags);
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], (ushort)Command);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], Cookie);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], OffsetBytes);
        BinaryPrimitives.WriteUInt32BigEndian(destination[24..], LengthBytes);
    }
}
