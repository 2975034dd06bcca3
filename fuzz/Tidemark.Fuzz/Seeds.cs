using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Fuzz;

/// <summary>
/// Valid sessions and commands the fuzzers start from (built here rather than kept as binary files):
/// mutations of well-formed input reach far deeper into the parsers than random bytes do.
/// </summary>
public static class Seeds
{
    public const string IscsiTarget = "iqn.2026-11.dev.tidemark:fuzz";

    public static IReadOnlyList<byte[]> For(string target) => target switch
    {
        "nbd" => [NbdSession(structured: true), NbdSession(structured: false), NbdOldStyleName()],
        "iscsi" => [IscsiSession(), IscsiDiscovery()],
        "cdb" => CdbSeeds(),
        "stream" => StreamTarget.Seeds,
        _ => throw new ArgumentException($"no fuzz target '{target}'; choose one of {string.Join(", ", FuzzTargets.All.Keys)}"),
    };

    private static byte[] NbdSession(bool structured)
    {
        var session = new ArrayBufferWriter<byte>();
        session.Write(NbdClientFlags());
        if (structured)
        {
            session.Write(Option(NbdOptionType.StructuredReply, []));
            session.Write(Option(NbdOptionType.SetMetaContext, MetaContext("vol", "base:allocation")));
        }

        session.Write(Option(NbdOptionType.List, []));
        session.Write(Option(NbdOptionType.Info, NameAndInfo("vol", NbdInfoType.Name, NbdInfoType.BlockSize)));
        session.Write(Option(NbdOptionType.ListMetaContext, MetaContext("vol", "base:")));
        session.Write(Option(NbdOptionType.Go, NameAndInfo("vol", NbdInfoType.BlockSize)));
        var payload = new byte[8192];
        new Random(1).NextBytes(payload);
        session.Write(Request(NbdCommand.Write, 1, 4096, 8192, NbdCommandFlags.Fua, payload));
        session.Write(Request(NbdCommand.Read, 2, 0, 16384));
        session.Write(Request(NbdCommand.BlockStatus, 3, 0, 65536));
        session.Write(Request(NbdCommand.Trim, 4, 4096, 4096));
        session.Write(Request(NbdCommand.WriteZeroes, 5, 0, 8192, NbdCommandFlags.FastZero));
        session.Write(Request(NbdCommand.Cache, 6, 0, 4096));
        session.Write(Request(NbdCommand.Flush, 7, 0, 0));
        session.Write(Request(NbdCommand.Disconnect, 8, 0, 0));
        return session.WrittenSpan.ToArray();
    }

    private static byte[] NbdOldStyleName()
    {
        var session = new ArrayBufferWriter<byte>();
        session.Write(NbdClientFlags());
        session.Write(Option(NbdOptionType.ExportName, Encoding.UTF8.GetBytes("vol")));
        session.Write(Request(NbdCommand.Read, 1, 0, 512));
        session.Write(Request(NbdCommand.Disconnect, 2, 0, 0));
        return session.WrittenSpan.ToArray();
    }

    private static byte[] NbdClientFlags() => [0, 0, 0, (byte)(Protocols.Nbd.Wire.NbdClientFlags.FixedNewstyle | Protocols.Nbd.Wire.NbdClientFlags.NoZeroes)];

    private static byte[] Option(NbdOptionType option, ReadOnlySpan<byte> data)
    {
        var raw = new byte[NbdOptionHeader.SizeBytes + data.Length];
        new NbdOptionHeader(NbdMagic.IHaveOpt, option, (uint)data.Length).WriteTo(raw);
        data.CopyTo(raw.AsSpan(NbdOptionHeader.SizeBytes));
        return raw;
    }

    private static byte[] Request(NbdCommand command, ulong cookie, ulong offset, uint length, NbdCommandFlags flags = NbdCommandFlags.None, byte[]? payload = null)
    {
        var raw = new byte[NbdRequestHeader.SizeBytes + (payload?.Length ?? 0)];
        new NbdRequestHeader(NbdMagic.Request, flags, command, cookie, offset, length).WriteTo(raw);
        payload?.CopyTo(raw, NbdRequestHeader.SizeBytes);
        return raw;
    }

    private static byte[] NameAndInfo(string name, params NbdInfoType[] requests)
    {
        var buffer = new ArrayBufferWriter<byte>();
        LengthPrefixed(buffer, Encoding.UTF8.GetBytes(name));
        BinaryPrimitives.WriteUInt16BigEndian(buffer.GetSpan(2), (ushort)requests.Length);
        buffer.Advance(2);
        foreach (var request in requests)
        {
            BinaryPrimitives.WriteUInt16BigEndian(buffer.GetSpan(2), (ushort)request);
            buffer.Advance(2);
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static byte[] MetaContext(string name, params string[] queries)
    {
        var buffer = new ArrayBufferWriter<byte>();
        LengthPrefixed(buffer, Encoding.UTF8.GetBytes(name));
        BinaryPrimitives.WriteUInt32BigEndian(buffer.GetSpan(4), (uint)queries.Length);
        buffer.Advance(4);
        foreach (var query in queries)
        {
            LengthPrefixed(buffer, Encoding.UTF8.GetBytes(query));
        }

        return buffer.WrittenSpan.ToArray();
    }

    private static void LengthPrefixed(ArrayBufferWriter<byte> buffer, byte[] bytes)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer.GetSpan(4), (uint)bytes.Length);
        buffer.Advance(4);
        buffer.Write(bytes);
    }

    private static byte[] IscsiSession()
    {
        var session = new ArrayBufferWriter<byte>();
        uint cmdSn = 1;
        Login(session, 0, 1, ("InitiatorName", "iqn.2026-11.dev.tidemark:fuzzer"), ("TargetName", IscsiTarget), ("SessionType", "Normal"), ("AuthMethod", "None"));
        Login(session, 1, 3, ("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxRecvDataSegmentLength", "65536"), ("InitialR2T", "No"), ("ImmediateData", "Yes"));
        Command(session, [0x12, 0, 0, 0, 96, 0], 96, read: true, cmdSn++, itt: 1); // INQUIRY
        Command(session, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8, read: true, cmdSn++, itt: 2); // READ CAPACITY(10)
        var data = new byte[1024];
        new Random(2).NextBytes(data);
        Command(session, [0x2a, 0, 0, 0, 0, 8, 0, 0, 2, 0], 1024, read: false, cmdSn++, itt: 3, data); // WRITE(10) immediate
        Command(session, [0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0], 1024, read: true, cmdSn++, itt: 4); // READ(10)
        Command(session, [0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, read: false, cmdSn++, itt: 5, [0, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 8, 0, 0, 0, 0]); // UNMAP
        var logout = new byte[BasicHeaderSegment.LengthBytes];
        new LogoutRequestPdu(true, 0, 6, 0, cmdSn, 0).WriteTo(logout);
        session.Write(logout);
        return session.WrittenSpan.ToArray();
    }

    private static byte[] IscsiDiscovery()
    {
        var session = new ArrayBufferWriter<byte>();
        Login(session, 0, 3, ("InitiatorName", "iqn.2026-11.dev.tidemark:fuzzer"), ("SessionType", "Discovery"), ("AuthMethod", "None"));
        var text = Encoding.UTF8.GetBytes("SendTargets=All\0");
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        bhs[0] = 0x04; // Text Request
        bhs[1] = 0x80; // Final
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(4), (uint)text.Length); // AHS length 0, data length
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(16), 7); // initiator task tag
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(20), 0xffffffff); // target transfer tag
        BinaryPrimitives.WriteUInt32BigEndian(bhs.AsSpan(24), 1); // CmdSN
        session.Write(bhs);
        session.Write(Padded(text));
        return session.WrittenSpan.ToArray();
    }

    private static void Login(ArrayBufferWriter<byte> session, int currentStage, int nextStage, params (string Key, string Value)[] keys)
    {
        var text = Encoding.UTF8.GetBytes(string.Concat(keys.Select(k => $"{k.Key}={k.Value}\0")));
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new LoginRequestPdu(true, false, currentStage, nextStage, 0, 0, text.Length, 0x0002_3D00_0001, 0, 1, 0, 1, 0).WriteTo(bhs);
        session.Write(bhs);
        session.Write(Padded(text));
    }

    private static void Command(ArrayBufferWriter<byte> session, byte[] cdb, uint expected, bool read, uint cmdSn, uint itt, byte[]? immediate = null)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, read, !read, 1, immediate?.Length ?? 0, 0, itt, expected, cmdSn, 1).WriteTo(bhs, cdb);
        session.Write(bhs);
        session.Write(Padded(immediate ?? []));
    }

    private static byte[] Padded(byte[] data) => [.. data, .. new byte[BasicHeaderSegment.PaddedLength(data.Length) - data.Length]];

    private static List<byte[]> CdbSeeds()
    {
        // First byte: CDB length choice (0:6 1:10 2:12 3:16 4:32; bit 7 read-only unit), then the CDB, then data-out.
        var data = new byte[1024];
        new Random(3).NextBytes(data);
        return
        [
            [0, 0x00, 0, 0, 0, 0, 0], // TEST UNIT READY
            [0, 0x12, 1, 0x83, 0, 255, 0], // INQUIRY, device identification page
            [0, 0x12, 1, 0xb0, 0, 64, 0], // INQUIRY, block limits
            [1, 0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], // READ CAPACITY(10)
            [3, 0x9e, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], // READ CAPACITY(16)
            [1, 0x28, 0, 0, 0, 0, 8, 0, 0, 2, 0], // READ(10)
            [.. (byte[])[3, 0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 2, 0, 0], .. data], // WRITE(16) with FUA
            [.. (byte[])[1, 0x89 - 0x89 + 0x41, 0x08, 0, 0, 0, 0, 0, 0, 1, 0], .. data[..512]], // WRITE SAME(10) with UNMAP
            [.. (byte[])[3, 0x89, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0], .. data], // COMPARE AND WRITE
            [1, 0x5a, 0, 0x3f, 0, 0, 0, 0, 1, 0, 0], // MODE SENSE(10), all pages
            [0, 0x1a, 0, 0x08, 0, 64, 0], // MODE SENSE(6), caching
            [3, 0x9e, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], // GET LBA STATUS
            [2, 0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], // REPORT LUNS
            [2, 0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], // REPORT SUPPORTED OPERATION CODES
            [1, 0x5e, 0, 0, 0, 0, 0, 0, 0, 8, 0], // PERSISTENT RESERVE IN, read keys
            [.. (byte[])[1, 0x5f, 0, 0, 0, 0, 0, 0, 0, 24, 0], .. (byte[])[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0, 0, 0, 0, 0, 0, 0, 0]], // PERSISTENT RESERVE OUT, register
            [1, 0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], // SYNCHRONIZE CACHE(10)
        ];
    }
}
