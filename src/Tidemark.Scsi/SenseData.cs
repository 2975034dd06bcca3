using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <summary>
/// One sense condition: key, additional sense code and qualifier, and an optional INFORMATION
/// field. Written in the fixed format (SPC-4 4.5.3) because every initiator parses it.
/// </summary>
public readonly record struct SenseData(SenseKey Key, byte AdditionalSenseCode, byte AdditionalSenseCodeQualifier, uint? Information = null, ushort? CdbFieldPointer = null)
{
    /// <summary>SPC-4 4.5.3: 18 bytes with ADDITIONAL SENSE LENGTH 10.</summary>
    public const int FixedFormatLengthBytes = 18;

    public static SenseData InvalidOpcode => new(SenseKey.IllegalRequest, 0x20, 0x00);

    public static SenseData InvalidFieldInCdb => new(SenseKey.IllegalRequest, 0x24, 0x00);

    /// <summary>INVALID FIELD IN CDB naming the offending CDB byte (SPC-4 4.5.2.4.2 field pointer).</summary>
    public static SenseData InvalidFieldInCdbAt(int cdbByte) => new(SenseKey.IllegalRequest, 0x24, 0x00, null, (ushort)cdbByte);

    public static SenseData InvalidFieldInParameterList => new(SenseKey.IllegalRequest, 0x26, 0x00);

    public static SenseData ParameterListLengthError => new(SenseKey.IllegalRequest, 0x1A, 0x00);

    public static SenseData LbaOutOfRange => new(SenseKey.IllegalRequest, 0x21, 0x00);

    public static SenseData LogicalUnitNotSupported => new(SenseKey.IllegalRequest, 0x25, 0x00);

    public static SenseData SavingParametersNotSupported => new(SenseKey.IllegalRequest, 0x39, 0x00);

    /// <summary>SPC-4: INVALID FIELD IN COMMAND INFORMATION UNIT (used for EDTL shorter than the CDB's transfer).</summary>
    public static SenseData InvalidFieldInInformationUnit => new(SenseKey.IllegalRequest, 0x0E, 0x03);

    public static SenseData WriteProtected => new(SenseKey.DataProtect, 0x27, 0x00);

    /// <summary>SPC-4: LOGICAL UNIT SOFTWARE WRITE PROTECTED, while the control mode page's SWP bit is set.</summary>
    public static SenseData SoftwareWriteProtected => new(SenseKey.DataProtect, 0x27, 0x02);

    /// <summary>SPC-4: MODE PARAMETERS CHANGED, for the other I_T nexuses after a MODE SELECT changed a shared page.</summary>
    public static SenseData ModeParametersChanged => new(SenseKey.UnitAttention, 0x2A, 0x01);

    public static SenseData SpaceAllocationFailedWriteProtect => new(SenseKey.DataProtect, 0x27, 0x07);

    public static SenseData UnrecoveredReadError => new(SenseKey.MediumError, 0x11, 0x00);

    public static SenseData WriteError => new(SenseKey.MediumError, 0x0C, 0x00);

    /// <summary>SBC-4 4.11: LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.</summary>
    public static SenseData SanitizeInProgress => new(SenseKey.NotReady, 0x04, 0x1B);

    public static SenseData NotReadyCauseNotReportable => new(SenseKey.NotReady, 0x04, 0x00);

    public static SenseData CapacityDataChanged => new(SenseKey.UnitAttention, 0x2A, 0x09);

    public static SenseData LogicalUnitResetOccurred => new(SenseKey.UnitAttention, 0x29, 0x03);

    public static SenseData TargetResetOccurred => new(SenseKey.UnitAttention, 0x29, 0x02);

    public static SenseData Miscompare(uint offsetBytes) => new(SenseKey.Miscompare, 0x1D, 0x00, offsetBytes);

    /// <summary>RFC 7143 11.4.7.2: the iSCSI condition "protocol service CRC error" (a lost or out-of-order Data-Out).</summary>
    public static SenseData ProtocolServiceCrcError => new(SenseKey.AbortedCommand, 0x47, 0x05);

    /// <summary>SPC-4 6.4.3: more CSCD descriptors than RECEIVE COPY RESULTS (OPERATING PARAMETERS) allows.</summary>
    public static SenseData TooManyTargetDescriptors => new(SenseKey.IllegalRequest, 0x26, 0x06);

    /// <summary>SPC-4 6.4.3: more segment descriptors than the copy manager allows.</summary>
    public static SenseData TooManySegmentDescriptors => new(SenseKey.IllegalRequest, 0x26, 0x08);

    /// <summary>SPC-4 6.4.5: a CSCD descriptor type code the copy manager does not implement.</summary>
    public static SenseData UnsupportedTargetDescriptorType => new(SenseKey.IllegalRequest, 0x26, 0x07);

    /// <summary>SPC-4 6.4.6: a segment descriptor type code the copy manager does not implement.</summary>
    public static SenseData UnsupportedSegmentDescriptorType => new(SenseKey.IllegalRequest, 0x26, 0x09);

    /// <summary>
    /// SPC-4 6.4: COPY ABORTED, COPY TARGET DEVICE NOT REACHABLE. Used when a segment names a CSCD that
    /// is not in the list, names a logical unit this initiator cannot reach, or a range that the
    /// copy source or destination does not have; INFORMATION carries the segment's index.
    /// </summary>
    public static SenseData CopyTargetNotReachable(uint segment) => new(SenseKey.CopyAborted, 0x0D, 0x02, segment);

    /// <summary>SPC-4 6.4: COPY ABORTED, THIRD PARTY DEVICE FAILURE: reading or writing a copy target failed mid-segment.</summary>
    public static SenseData CopyTargetFailure(uint segment) => new(SenseKey.CopyAborted, 0x0D, 0x01, segment);

    /// <summary>SPC-4: INVALID TOKEN OPERATION, TOKEN UNKNOWN (WRITE USING TOKEN with a token this server did not make, or deleted).</summary>
    public static SenseData TokenUnknown => new(SenseKey.IllegalRequest, 0x23, 0x04);

    /// <summary>SPC-4: INVALID TOKEN OPERATION, TOKEN EXPIRED (its inactivity timeout passed).</summary>
    public static SenseData TokenExpired => new(SenseKey.IllegalRequest, 0x23, 0x07);

    /// <summary>SPC-4: INVALID TOKEN OPERATION, UNSUPPORTED TOKEN TYPE.</summary>
    public static SenseData UnsupportedTokenType => new(SenseKey.IllegalRequest, 0x23, 0x01);

    /// <summary>SPC-4: INVALID TOKEN OPERATION, REMOTE TOKEN USAGE NOT SUPPORTED (its source is a unit this initiator cannot reach).</summary>
    public static SenseData RemoteTokenUsageNotSupported => new(SenseKey.IllegalRequest, 0x23, 0x02);

    /// <summary>SPC-4: INSUFFICIENT RESOURCES (the server holds as many ROD tokens as it allows).</summary>
    public static SenseData InsufficientResources => new(SenseKey.IllegalRequest, 0x55, 0x03);

    public static SenseData NoSense => new(SenseKey.NoSense, 0x00, 0x00);

    /// <summary>Writes the fixed-format sense; returns the number of bytes written (18, or less if the span is short).</summary>
    public int WriteFixedTo(Span<byte> destination)
    {
        Span<byte> s = stackalloc byte[FixedFormatLengthBytes];
        s.Clear();

        // SPC-4 4.5.3: RESPONSE CODE 70h (current error), VALID bit when INFORMATION is meaningful.
        s[0] = (byte)(0x70 | (Information.HasValue ? 0x80 : 0));
        s[2] = (byte)Key;
        BinaryPrimitives.WriteUInt32BigEndian(s[3..], Information ?? 0);
        s[7] = FixedFormatLengthBytes - 8;
        s[12] = AdditionalSenseCode;
        s[13] = AdditionalSenseCodeQualifier;
        if (CdbFieldPointer is { } pointer)
        {
            // SKSV and C/D (the error is in the CDB), then the byte offset of the field.
            s[15] = 0x80 | 0x40;
            BinaryPrimitives.WriteUInt16BigEndian(s[16..], pointer);
        }
        var n = Math.Min(destination.Length, FixedFormatLengthBytes);
        s[..n].CopyTo(destination);
        return n;
    }

    /// <summary>Parses fixed (70h/71h) or descriptor (72h/73h) sense; false when it is neither.</summary>
    public static bool TryRead(ReadOnlySpan<byte> source, out SenseData sense)
    {
        sense = default;
        if (source.Length < 8)
        {
            return false;
        }

        var code = source[0] & 0x7F;
        if (code is 0x70 or 0x71 && source.Length >= 14)
        {
            uint? info = (source[0] & 0x80) != 0 ? BinaryPrimitives.ReadUInt32BigEndian(source[3..]) : null;
            ushort? pointer = source.Length >= 18 && (source[15] & 0xC0) == 0xC0 ? BinaryPrimitives.ReadUInt16BigEndian(source[16..]) : null;
            sense = new SenseData((SenseKey)(source[2] & 0x0F), source[12], source[13], info, pointer);
            return true;
        }

        if (code is 0x72 or 0x73)
        {
            sense = new SenseData((SenseKey)(source[1] & 0x0F), source[2], source[3]);
            return true;
        }

        return false;
    }

    public override string ToString() => $"{Key} {AdditionalSenseCode:X2}/{AdditionalSenseCodeQualifier:X2}";
}
