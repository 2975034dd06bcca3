using Tidemark.TestKit;

namespace Tidemark.Scsi.Tests;

/// <summary>Runs CDBs against a <see cref="ScsiLogicalUnit"/> over a <see cref="MemoryBlockDevice"/>.</summary>
internal sealed class ScsiHarness
{
    public ScsiHarness(long sizeBytes = 16L << 20, int blockBytes = 512, bool readOnly = false, IBlockDevice? device = null, ScsiLogicalUnitOptions? options = null, IScsiCopyScope? scope = null)
    {
        Memory = device as MemoryBlockDevice ?? new MemoryBlockDevice(sizeBytes, blockBytes);
        Device = device ?? Memory;
        Unit = new ScsiLogicalUnit(Device, readOnly, options) { CopyScope = scope };
        Nexus = Unit.OpenNexus();
    }

    public MemoryBlockDevice Memory { get; }

    public IBlockDevice Device { get; }

    public ScsiLogicalUnit Unit { get; }

    public ScsiNexus Nexus { get; }

    public byte[] Sense { get; } = new byte[SenseData.FixedFormatLengthBytes];

    public byte[] DataIn { get; private set; } = [];

    public ScsiResult Run(byte[] cdb, byte[]? dataOut = null, int dataInBytes = 0, ScsiNexus? nexus = null)
    {
        DataIn = new byte[dataInBytes];
        return Unit.Execute(nexus ?? Nexus, new ScsiCommand(cdb, dataOut ?? [], DataIn, Sense));
    }

    public SenseData LastSense()
    {
        Assert.True(SenseData.TryRead(Sense, out var sense));
        return sense;
    }

    public void AssertCheckCondition(ScsiResult result, SenseData expected)
    {
        Assert.Equal(ScsiStatus.CheckCondition, result.Status);
        Assert.Equal(expected, LastSense());
    }

    public static byte[] Cdb10(byte opcode, uint lba, ushort blocks, byte flags = 0) =>
        [opcode, flags, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(blocks >> 8), (byte)blocks, 0];

    public static byte[] Cdb16(byte opcode, ulong lba, uint blocks, byte flags = 0)
    {
        var cdb = new byte[16];
        cdb[0] = opcode;
        cdb[1] = flags;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), blocks);
        return cdb;
    }
}
