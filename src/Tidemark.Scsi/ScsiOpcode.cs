namespace Tidemark.Scsi;

/// <summary>Operation codes this command set implements (SPC-4, SBC-3).</summary>
public static class ScsiOpcode
{
    public const byte TestUnitReady = 0x00;
    public const byte RequestSense = 0x03;
    public const byte Read6 = 0x08;
    public const byte Write6 = 0x0A;
    public const byte Inquiry = 0x12;
    public const byte ModeSelect6 = 0x15;
    public const byte Reserve6 = 0x16;
    public const byte Release6 = 0x17;
    public const byte ModeSense6 = 0x1A;
    public const byte StartStopUnit = 0x1B;
    public const byte PreventAllowMediumRemoval = 0x1E;
    public const byte ReadCapacity10 = 0x25;
    public const byte Read10 = 0x28;
    public const byte Write10 = 0x2A;
    public const byte WriteAndVerify10 = 0x2E;
    public const byte Verify10 = 0x2F;
    public const byte ReadDefectData10 = 0x37;
    public const byte PreFetch10 = 0x34;
    public const byte SynchronizeCache10 = 0x35;
    public const byte WriteSame10 = 0x41;
    public const byte Sanitize = 0x48;
    public const byte Unmap = 0x42;
    public const byte ModeSelect10 = 0x55;
    public const byte Reserve10 = 0x56;
    public const byte Release10 = 0x57;
    public const byte ModeSense10 = 0x5A;
    public const byte ExtendedCopy = 0x83;
    public const byte ReceiveCopyResults = 0x84;
    public const byte Read16 = 0x88;
    public const byte CompareAndWrite = 0x89;
    public const byte Write16 = 0x8A;
    public const byte OrWrite16 = 0x8B;
    public const byte WriteAndVerify16 = 0x8E;
    public const byte Verify16 = 0x8F;
    public const byte PreFetch16 = 0x90;
    public const byte SynchronizeCache16 = 0x91;
    public const byte WriteSame16 = 0x93;
    public const byte WriteAtomic16 = 0x9C;
    public const byte ServiceActionIn16 = 0x9E;
    public const byte ReportLuns = 0xA0;
    public const byte MaintenanceIn = 0xA3;
    public const byte Read12 = 0xA8;
    public const byte Write12 = 0xAA;
    public const byte WriteAndVerify12 = 0xAE;
    public const byte Verify12 = 0xAF;
    public const byte ReadDefectData12 = 0xB7;

    public const byte ReadCapacity16ServiceAction = 0x10;
    public const byte GetLbaStatusServiceAction = 0x12;
    public const byte ReportSupportedOperationCodesServiceAction = 0x0C;

    /// <summary>SPC-4 6.4: EXTENDED COPY (LID1) is service action 00h of opcode 83h.</summary>
    public const byte ExtendedCopyLid1ServiceAction = 0x00;

    /// <summary>SBC-3 5.9 and 5.41: POPULATE TOKEN and WRITE USING TOKEN, service actions of opcode 83h.</summary>
    public const byte PopulateTokenServiceAction = 0x10;
    public const byte WriteUsingTokenServiceAction = 0x11;

    /// <summary>SPC-4 6.19: RECEIVE ROD TOKEN INFORMATION, service action 07h of opcode 84h.</summary>
    public const byte ReceiveRodTokenInformationServiceAction = 0x07;

    /// <summary>SPC-4 6.18: RECEIVE COPY RESULTS service actions (LID1).</summary>
    public const byte CopyStatusServiceAction = 0x00;
    public const byte OperatingParametersServiceAction = 0x03;

    /// <summary>SBC-4 5.30 SANITIZE service actions.</summary>
    public const byte SanitizeOverwrite = 0x01;
    public const byte SanitizeBlockErase = 0x02;
    public const byte SanitizeCryptoErase = 0x03;
    public const byte SanitizeExitFailureMode = 0x1F;

    /// <summary>SPC-4 4.2.5.1: the CDB length follows from the opcode's group code (top three bits).</summary>
    public static int CdbLengthBytes(byte opcode) => (opcode >> 5) switch
    {
        0 => 6,
        1 or 2 => 10,
        4 => 16,
        5 => 12,
        _ => 0,
    };
}
