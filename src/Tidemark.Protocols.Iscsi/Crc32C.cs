using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.Intrinsics.X86;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// CRC32C (Castagnoli), the iSCSI header and data digest (RFC 7143 13.1, Appendix B.4): initial value
/// and final XOR all ones, reflected polynomial 82F63B78h, sent least significant byte first.
/// System.IO.Hashing has no CRC32C, so SSE4.2's CRC32 instruction is used with a table fallback.
/// </summary>
public static class Crc32C
{
    private const uint Polynomial = 0x82F63B78;
    private static readonly uint[] _table = BuildTable();

    public static uint Compute(ReadOnlySpan<byte> data) => Finish(Append(Start, data));

    public static uint Compute(in ReadOnlySequence<byte> data)
    {
        var crc = Start;
        foreach (var segment in data)
        {
            crc = Append(crc, segment.Span);
        }

        return Finish(crc);
    }

    internal const uint Start = 0xFFFF_FFFF;

    internal static uint Finish(uint crc) => ~crc;

    internal static uint Append(uint crc, ReadOnlySpan<byte> data)
    {
        if (Sse42.X64.IsSupported)
        {
            ulong c = crc;
            while (data.Length >= 8)
            {
                c = Sse42.X64.Crc32(c, BinaryPrimitives.ReadUInt64LittleEndian(data));
                data = data[8..];
            }

            crc = (uint)c;
            foreach (var b in data)
            {
                crc = Sse42.Crc32(crc, b);
            }

            return crc;
        }

        return AppendSoftware(crc, data);
    }

    internal static uint AppendSoftware(uint crc, ReadOnlySpan<byte> data)
    {
        var table = _table;
        foreach (var b in data)
        {
            crc = table[(byte)(crc ^ b)] ^ (crc >> 8);
        }

        return crc;
    }

    private static uint[] BuildTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            var c = i;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? (c >> 1) ^ Polynomial : c >> 1;
            }

            table[i] = c;
        }

        return table;
    }
}
