using System.Buffers.Binary;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    /// <summary>
    /// GET LBA STATUS looks this far ahead at most, so one command stays short on a huge volume; the
    /// engine answers 256 MiB per call, so this is at most 64 calls.
    /// </summary>
    private const long MaxLbaStatusScanBytes = 16L << 30;

    private const int MaxLbaStatusDescriptors = 64;

    private ScsiResult ReadCapacity10(in ScsiCommand c)
    {
        // SBC-3 5.15: RETURNED LOGICAL BLOCK ADDRESS saturates at FFFFFFFFh (use READ CAPACITY 16).
        Span<byte> b = stackalloc byte[8];
        var last = CapacityBlocks - 1;
        BinaryPrimitives.WriteUInt32BigEndian(b, last > uint.MaxValue ? uint.MaxValue : (uint)last);
        BinaryPrimitives.WriteUInt32BigEndian(b[4..], (uint)BlockBytes);
        return c.ReturnData(b, 8);
    }

    private ScsiResult ServiceActionIn16(in ScsiCommand c) => (c.Cdb[1] & 0x1F) switch
    {
        ScsiOpcode.ReadCapacity16ServiceAction => ReadCapacity16(c),
        ScsiOpcode.GetLbaStatusServiceAction => GetLbaStatus(c),
        _ => c.Fail(SenseData.InvalidFieldInCdb),
    };

    private ScsiResult ReadCapacity16(in ScsiCommand c)
    {
        // SBC-3 5.16: 32 bytes; LBPME=1 (thin provisioned), LBPRZ=1 (unmapped blocks read zeros).
        var allocation = (int)Math.Min(ReadUInt32(c.Cdb, 10), int.MaxValue);
        Span<byte> b = stackalloc byte[32];
        b.Clear();
        BinaryPrimitives.WriteUInt64BigEndian(b, (ulong)(CapacityBlocks - 1));
        BinaryPrimitives.WriteUInt32BigEndian(b[8..], (uint)BlockBytes);
        // LOGICAL BLOCKS PER PHYSICAL BLOCK EXPONENT: the allocation unit is the "physical" block, so
        // initiators align I/O and UNMAP to it.
        b[13] = (byte)(System.Numerics.BitOperations.Log2((uint)Math.Max(1, Device.AllocationUnitBytes / BlockBytes)) & 0x0F);
        b[14] = 0x80 | 0x40;
        return c.ReturnData(b, allocation);
    }

    private ScsiResult GetLbaStatus(in ScsiCommand c)
    {
        // SBC-3 5.5: starting LBA bytes 2-9, ALLOCATION LENGTH bytes 10-13.
        var lba = ReadUInt64(c.Cdb, 2);
        var allocation = (int)Math.Min(ReadUInt32(c.Cdb, 10), int.MaxValue);
        if (lba >= (ulong)CapacityBlocks)
        {
            return c.Fail(SenseData.LbaOutOfRange);
        }

        // The device answers a bounded stretch per call; runs of one state that continue across calls
        // are merged, so a deallocated volume is one descriptor however the device splits it. The scan
        // stops when the descriptors are full, at the end, after MaxLbaStatusScanBytes or once
        // LbaStatusScanTime has passed: the initiator asks again from where the last descriptor ends.
        var offset = (long)lba * BlockBytes;
        var end = Math.Min(Device.SizeBytes, offset + MaxLbaStatusScanBytes);
        var maxDescriptors = Math.Clamp((allocation - 8) / 16, 1, MaxLbaStatusDescriptors);
        Span<AllocationRun> runs = stackalloc AllocationRun[MaxLbaStatusDescriptors + 1];
        var count = 0;
        var next = offset;
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        while (next < end && count <= maxDescriptors)
        {
            if (count > 0 && System.Diagnostics.Stopwatch.GetElapsedTime(started) >= _options.LbaStatusScanTime)
            {
                break;
            }

            // One slot past the last descriptor lets a run that continues into the next stretch extend it.
            var n = Device.GetAllocationStatus(next, end - next, runs[count..(maxDescriptors + 1)]);
            if (n == 0)
            {
                break;
            }

            if (count > 0 && runs[count - 1].State == runs[count].State)
            {
                var last = runs[count - 1];
                var joined = runs[count];
                runs[count - 1] = last with { LengthBytes = joined.OffsetBytes + joined.LengthBytes - last.OffsetBytes };
                runs.Slice(count + 1, n - 1).CopyTo(runs[count..]);
                n--;
            }

            count += n;
            next = runs[count - 1].OffsetBytes + runs[count - 1].LengthBytes;
        }

        count = Math.Min(count, maxDescriptors);
        Span<byte> b = stackalloc byte[8 + (16 * MaxLbaStatusDescriptors)];
        b.Clear();
        var p = 8;
        for (var i = 0; i < count; i++)
        {
            var run = runs[i];
            var firstBlock = run.OffsetBytes / BlockBytes;
            var endBlock = (run.OffsetBytes + run.LengthBytes + BlockBytes - 1) / BlockBytes;
            BinaryPrimitives.WriteUInt64BigEndian(b[p..], (ulong)firstBlock);
            BinaryPrimitives.WriteUInt32BigEndian(b[(p + 8)..], (uint)Math.Min(endBlock - firstBlock, uint.MaxValue));

            // PROVISIONING STATUS: 0 mapped, 1 deallocated.
            b[p + 12] = run.State == AllocationState.Hole ? (byte)1 : (byte)0;
            p += 16;
        }

        // PARAMETER DATA LENGTH counts the bytes after itself.
        BinaryPrimitives.WriteUInt32BigEndian(b, (uint)(p - 4));
        return c.ReturnData(b[..p], allocation);
    }
}
