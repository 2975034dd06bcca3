using System.IO.Pipelines;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

/// <summary>
/// The set-up ReadPiecesTests and WritePiecesTests share: an initiator logged in to
/// <see cref="Catalogs.Target"/> whose digests follow the keys it negotiated, the READ/WRITE (16)
/// CDBs they send, and the data pattern they write and read.
/// </summary>
internal static class PiecesSession
{
    public static async Task<TestInitiator> LoginAsync(IscsiTargetCatalog catalog, IscsiLimits limits, Func<PipeWriter, PipeWriter>? output, params (string Key, string Value)[] keys)
    {
        var initiator = new TestInitiator(catalog, limits, output);
        try
        {
            await initiator.LoginAsync(Catalogs.Target, keys);
        }
        catch
        {
            await initiator.DisposeAsync();
            throw;
        }

        // Digests start after login. Following what was offered rather than the answer keeps a
        // target that refused them from passing a digest test without digests: it fails instead.
        initiator.HeaderDigest = Offered(keys, "HeaderDigest");
        initiator.DataDigest = Offered(keys, "DataDigest");
        return initiator;
    }

    /// <summary>READ (16) or WRITE (16) (SBC-3 5.16 / 5.40) of <paramref name="blocks"/> at <paramref name="lba"/>; <paramref name="flags"/> is byte 1 (0x08 FUA).</summary>
    public static byte[] Cdb16(byte opcode, ulong lba, uint blocks, byte flags = 0)
    {
        var cdb = new byte[16];
        cdb[0] = opcode;
        cdb[1] = flags;
        for (var i = 0; i < 8; i++)
        {
            cdb[2 + i] = (byte)(lba >> (56 - (8 * i)));
        }

        for (var i = 0; i < 4; i++)
        {
            cdb[10 + i] = (byte)(blocks >> (24 - (8 * i)));
        }

        return cdb;
    }

    /// <summary>Bytes that differ from block to block and from <paramref name="seed"/> to seed, so a misplaced piece shows.</summary>
    public static byte[] Pattern(int length, int seed = 0) => Enumerable.Range(0, length).Select(i => (byte)((i * 31) + (i >> 12) + seed)).ToArray();

    private static bool Offered((string Key, string Value)[] keys, string digest) =>
        keys.Any(k => k.Key == digest && k.Value == "CRC32C");
}
