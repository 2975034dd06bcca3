using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <summary>
/// An identification CSCD descriptor (SPC-4 6.4.5.6, type E4h): the designator that names a logical
/// unit (the designation descriptor of its Device Identification VPD page) and the block length
/// the initiator believes it has.
/// </summary>
internal sealed record CopyTargetDescriptor(byte DesignatorType, byte[] Designator, int BlockBytes);

/// <summary>
/// A block device to block device segment descriptor (SPC-4 6.4.6.5, type 02h): BLOCKS logical
/// blocks from SOURCE at SOURCE LBA to DESTINATION at DESTINATION LBA. With DC set the count is in
/// destination blocks, otherwise in source blocks.
/// </summary>
internal readonly record struct CopySegment(ushort Source, ushort Destination, uint Blocks, bool DestinationCount, ulong SourceLba, ulong DestinationLba);

/// <summary>The parameter list of EXTENDED COPY (LID1), checked against the copy manager's limits.</summary>
internal sealed class ExtendedCopyParameterList
{
    /// <summary>SPC-4 6.4.3: the parameter list header is 16 bytes.</summary>
    public const int HeaderBytes = 16;

    /// <summary>SPC-4 6.4.5.1: CSCD descriptors with type codes E0h-E9h are 32 bytes long.</summary>
    public const int TargetDescriptorBytes = 32;

    /// <summary>SPC-4 6.4.6.5: a block-to-block segment descriptor is 28 bytes (DESCRIPTOR LENGTH 0018h).</summary>
    public const int BlockToBlockSegmentBytes = 28;

    public const byte IdentificationDescriptorType = 0xE4;

    public const byte BlockToBlockSegmentType = 0x02;

    /// <summary>SPC-4 table 123 LIST ID USAGE: 00b hold status for RECEIVE COPY RESULTS, 01b reserved, 10b and 11b do not.</summary>
    public const int ListIdUsageHold = 0;

    private ExtendedCopyParameterList(byte listId, int listIdUsage, List<CopyTargetDescriptor> targets, List<CopySegment> segments)
    {
        ListId = listId;
        ListIdUsage = listIdUsage;
        Targets = targets;
        Segments = segments;
    }

    public byte ListId { get; }

    public int ListIdUsage { get; }

    public IReadOnlyList<CopyTargetDescriptor> Targets { get; }

    public IReadOnlyList<CopySegment> Segments { get; }

    /// <summary>
    /// Parses <paramref name="list"/> (exactly the PARAMETER LIST LENGTH bytes). Returns null and the
    /// list, or the sense that SPC-4 6.4.3 names for what is wrong with it.
    /// </summary>
    public static SenseData? TryParse(ReadOnlySpan<byte> list, ScsiLogicalUnitOptions limits, out ExtendedCopyParameterList? parsed)
    {
        parsed = null;
        if (list.Length < HeaderBytes)
        {
            return SenseData.ParameterListLengthError;
        }

        // Header: LIST IDENTIFIER byte 0; STR bit 5, LIST ID USAGE bits 4-3, PRIORITY bits 2-0 of byte 1;
        // CSCD DESCRIPTOR LIST LENGTH bytes 2-3; SEGMENT DESCRIPTOR LIST LENGTH bytes 8-11;
        // INLINE DATA LENGTH bytes 12-15.
        var listId = list[0];
        var usage = (list[1] >> 3) & 0x03;
        var targetBytes = (long)BinaryPrimitives.ReadUInt16BigEndian(list[2..]);
        var segmentBytes = (long)BinaryPrimitives.ReadUInt32BigEndian(list[8..]);
        var inlineBytes = (long)BinaryPrimitives.ReadUInt32BigEndian(list[12..]);
        if (usage == 1 || (usage == 3 && listId != 0))
        {
            // 01b is reserved; 11b promises a LIST IDENTIFIER of zero.
            return SenseData.InvalidFieldInParameterList;
        }

        // The descriptor lists are bounded before anything is walked (MAXIMUM DESCRIPTOR LIST LENGTH).
        if (targetBytes + segmentBytes > limits.MaxCopyDescriptorListBytes)
        {
            return SenseData.ParameterListLengthError;
        }

        // No segment type this copy manager implements takes inline or embedded data.
        if (inlineBytes != 0)
        {
            return SenseData.InvalidFieldInParameterList;
        }

        if (HeaderBytes + targetBytes + segmentBytes > list.Length)
        {
            return SenseData.ParameterListLengthError;
        }

        var targets = new List<CopyTargetDescriptor>();
        var descriptors = list.Slice(HeaderBytes, (int)targetBytes);
        while (!descriptors.IsEmpty)
        {
            if (descriptors.Length < TargetDescriptorBytes)
            {
                return SenseData.ParameterListLengthError;
            }

            if (targets.Count == limits.MaxCopyTargetDescriptors)
            {
                return SenseData.TooManyTargetDescriptors;
            }

            var d = descriptors[..TargetDescriptorBytes];
            if (d[0] != IdentificationDescriptorType)
            {
                return SenseData.UnsupportedTargetDescriptorType;
            }

            // Byte 1: LU ID TYPE (ignored by SPC-4), NUL (obsolete), PERIPHERAL DEVICE TYPE bits 4-0,
            // which must be 00h (block device) for the device type specific bytes 28-31 to mean what
            // they mean here. Bytes 4-23 hold a designation descriptor (at most 20 bytes of designator).
            var designatorLength = d[7];
            if ((d[1] & 0x1F) != 0 || designatorLength > 20)
            {
                return SenseData.InvalidFieldInParameterList;
            }

            var blockBytes = (d[29] << 16) | (d[30] << 8) | d[31];
            targets.Add(new CopyTargetDescriptor((byte)(d[5] & 0x0F), d.Slice(8, designatorLength).ToArray(), blockBytes));
            descriptors = descriptors[TargetDescriptorBytes..];
        }

        var segments = new List<CopySegment>();
        var rest = list.Slice(HeaderBytes + (int)targetBytes, (int)segmentBytes);
        while (!rest.IsEmpty)
        {
            if (rest.Length < 4)
            {
                return SenseData.ParameterListLengthError;
            }

            // DESCRIPTOR LENGTH (bytes 2-3) counts the bytes after byte 3.
            var length = 4 + BinaryPrimitives.ReadUInt16BigEndian(rest[2..]);
            if (length > rest.Length)
            {
                return SenseData.ParameterListLengthError;
            }

            if (segments.Count == limits.MaxCopySegmentDescriptors)
            {
                return SenseData.TooManySegmentDescriptors;
            }

            var s = rest[..length];
            if (s[0] != BlockToBlockSegmentType)
            {
                return SenseData.UnsupportedSegmentDescriptorType;
            }

            if (length != BlockToBlockSegmentBytes)
            {
                return SenseData.InvalidFieldInParameterList;
            }

            segments.Add(new CopySegment(
                BinaryPrimitives.ReadUInt16BigEndian(s[4..]),
                BinaryPrimitives.ReadUInt16BigEndian(s[6..]),
                BinaryPrimitives.ReadUInt16BigEndian(s[10..]),
                (s[1] & 0x02) != 0,
                BinaryPrimitives.ReadUInt64BigEndian(s[12..]),
                BinaryPrimitives.ReadUInt64BigEndian(s[20..])));
            rest = rest[length..];
        }

        parsed = new ExtendedCopyParameterList(listId, usage, targets, segments);
        return null;
    }
}
