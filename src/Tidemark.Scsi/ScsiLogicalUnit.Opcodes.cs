using System.Buffers.Binary;

namespace Tidemark.Scsi;

public sealed partial class ScsiLogicalUnit
{
    /// <summary>What REPORT SUPPORTED OPERATION CODES lists: opcode, service action (or -1), CDB length.</summary>
    private static readonly (byte Opcode, short ServiceAction, byte CdbLength)[] _supported =
    [
        (ScsiOpcode.TestUnitReady, -1, 6),
        (ScsiOpcode.RequestSense, -1, 6),
        (ScsiOpcode.Read6, -1, 6),
        (ScsiOpcode.Write6, -1, 6),
        (ScsiOpcode.Inquiry, -1, 6),
        (ScsiOpcode.ModeSelect6, -1, 6),
        (ScsiOpcode.Reserve6, -1, 6),
        (ScsiOpcode.Release6, -1, 6),
        (ScsiOpcode.ModeSense6, -1, 6),
        (ScsiOpcode.StartStopUnit, -1, 6),
        (ScsiOpcode.PreventAllowMediumRemoval, -1, 6),
        (ScsiOpcode.ReadCapacity10, -1, 10),
        (ScsiOpcode.Read10, -1, 10),
        (ScsiOpcode.Write10, -1, 10),
        (ScsiOpcode.WriteAndVerify10, -1, 10),
        (ScsiOpcode.Verify10, -1, 10),
        (ScsiOpcode.ReadDefectData10, -1, 10),
        (ScsiOpcode.Sanitize, ScsiOpcode.SanitizeOverwrite, 10),
        (ScsiOpcode.Sanitize, ScsiOpcode.SanitizeBlockErase, 10),
        (ScsiOpcode.Sanitize, ScsiOpcode.SanitizeCryptoErase, 10),
        (ScsiOpcode.Sanitize, ScsiOpcode.SanitizeExitFailureMode, 10),
        (ScsiOpcode.PreFetch10, -1, 10),
        (ScsiOpcode.SynchronizeCache10, -1, 10),
        (ScsiOpcode.WriteSame10, -1, 10),
        (ScsiOpcode.Unmap, -1, 10),
        (ScsiOpcode.ModeSelect10, -1, 10),
        (ScsiOpcode.Reserve10, -1, 10),
        (ScsiOpcode.Release10, -1, 10),
        (ScsiOpcode.ModeSense10, -1, 10),
        (PersistentReserveIn, 0, 10),
        (PersistentReserveIn, 1, 10),
        (PersistentReserveIn, 2, 10),
        (PersistentReserveIn, 3, 10),
        (PersistentReserveOut, 0, 10),
        (PersistentReserveOut, 1, 10),
        (PersistentReserveOut, 2, 10),
        (PersistentReserveOut, 3, 10),
        (PersistentReserveOut, 4, 10),
        (PersistentReserveOut, 5, 10),
        (PersistentReserveOut, 6, 10),
        (ScsiOpcode.ExtendedCopy, ScsiOpcode.ExtendedCopyLid1ServiceAction, 16),
        (ScsiOpcode.ReceiveCopyResults, ScsiOpcode.CopyStatusServiceAction, 16),
        (ScsiOpcode.ExtendedCopy, ScsiOpcode.PopulateTokenServiceAction, 16),
        (ScsiOpcode.ExtendedCopy, ScsiOpcode.WriteUsingTokenServiceAction, 16),
        (ScsiOpcode.ReceiveCopyResults, ScsiOpcode.OperatingParametersServiceAction, 16),
        (ScsiOpcode.ReceiveCopyResults, ScsiOpcode.ReceiveRodTokenInformationServiceAction, 16),
        (ScsiOpcode.Read16, -1, 16),
        (ScsiOpcode.CompareAndWrite, -1, 16),
        (ScsiOpcode.Write16, -1, 16),
        (ScsiOpcode.OrWrite16, -1, 16),
        (ScsiOpcode.WriteAtomic16, -1, 16),
        (ScsiOpcode.WriteAndVerify16, -1, 16),
        (ScsiOpcode.Verify16, -1, 16),
        (ScsiOpcode.PreFetch16, -1, 16),
        (ScsiOpcode.SynchronizeCache16, -1, 16),
        (ScsiOpcode.WriteSame16, -1, 16),
        (ScsiOpcode.ServiceActionIn16, ScsiOpcode.ReadCapacity16ServiceAction, 16),
        (ScsiOpcode.ServiceActionIn16, ScsiOpcode.GetLbaStatusServiceAction, 16),
        (ScsiOpcode.ReportLuns, -1, 12),
        (ScsiOpcode.MaintenanceIn, ScsiOpcode.ReportSupportedOperationCodesServiceAction, 12),
        (ScsiOpcode.Read12, -1, 12),
        (ScsiOpcode.Write12, -1, 12),
        (ScsiOpcode.WriteAndVerify12, -1, 12),
        (ScsiOpcode.Verify12, -1, 12),
        (ScsiOpcode.ReadDefectData12, -1, 12),
    ];

    private ScsiResult MaintenanceIn(in ScsiCommand c) =>
        (c.Cdb[1] & 0x1F) == ScsiOpcode.ReportSupportedOperationCodesServiceAction
            ? ReportSupportedOperationCodes(c)
            : c.Fail(SenseData.InvalidFieldInCdb);

    // WRITE ATOMIC is listed only where the device writes atomically (else it is INVALID OPCODE).
    private bool Offers(byte opcode) => opcode != ScsiOpcode.WriteAtomic16 || MaxAtomicBlocks > 0;

    private ScsiResult ReportSupportedOperationCodes(in ScsiCommand c)
    {
        // SPC-4 6.35: RCTD byte 2 bit 7, REPORTING OPTIONS bits 2-0, ALLOCATION LENGTH bytes 6-9.
        var timeouts = (c.Cdb[2] & 0x80) != 0;
        var options = c.Cdb[2] & 0x07;
        var requestedOpcode = c.Cdb[3];
        var requestedAction = ReadUInt16(c.Cdb, 4);
        var allocation = (int)Math.Min(ReadUInt32(c.Cdb, 6), int.MaxValue);
        var timeoutBytes = timeouts ? 12 : 0;

        if (options == 0)
        {
            Span<byte> all = stackalloc byte[4 + (_supported.Length * (8 + 12))];
            all.Clear();
            var p = 4;
            foreach (var (opcode, action, length) in _supported)
            {
                if (!Offers(opcode))
                {
                    continue;
                }

                all[p] = opcode;
                BinaryPrimitives.WriteUInt16BigEndian(all[(p + 2)..], (ushort)Math.Max(action, (short)0));
                all[p + 5] = (byte)((timeouts ? 0x02 : 0) | (action >= 0 ? 0x01 : 0));
                BinaryPrimitives.WriteUInt16BigEndian(all[(p + 6)..], length);
                p += 8;
                if (timeouts)
                {
                    BinaryPrimitives.WriteUInt16BigEndian(all[p..], 0x0A);
                    p += 12;
                }
            }

            BinaryPrimitives.WriteUInt32BigEndian(all, (uint)(p - 4));
            return c.ReturnData(all[..p], allocation);
        }

        // The field pointer names byte 2: libiscsi reads a bare INVALID FIELD IN CDB on MAINTENANCE IN
        // as "command not implemented".
        if (options > 3)
        {
            return c.Fail(SenseData.InvalidFieldInCdbAt(2));
        }

        var hasServiceActions = false;
        var found = -1;
        for (var i = 0; i < _supported.Length; i++)
        {
            if (_supported[i].Opcode != requestedOpcode || !Offers(requestedOpcode))
            {
                continue;
            }

            hasServiceActions |= _supported[i].ServiceAction >= 0;
            if (_supported[i].ServiceAction < 0 || _supported[i].ServiceAction == requestedAction)
            {
                found = found < 0 ? i : found;
            }
        }

        // Option 1 names an opcode without service actions; option 2 one with them (SPC-4 table 152).
        if ((options == 1 && hasServiceActions) || (options == 2 && found >= 0 && !hasServiceActions))
        {
            return c.Fail(SenseData.InvalidFieldInCdbAt(2));
        }

        Span<byte> one = stackalloc byte[4 + 16 + 12];
        one.Clear();
        var cdbLength = found >= 0 ? _supported[found].CdbLength : 0;

        // SUPPORT 011b: supported as the standard describes; 001b: not supported.
        one[1] = (byte)((timeouts ? 0x80 : 0) | (found >= 0 ? 0x03 : 0x01));
        BinaryPrimitives.WriteUInt16BigEndian(one[2..], (ushort)cdbLength);
        if (found >= 0)
        {
            // CDB USAGE DATA: the opcode, then every bit the command may use.
            one.Slice(4, cdbLength).Fill(0xFF);
            one[4] = requestedOpcode;
            if (hasServiceActions)
            {
                // SPC-4 6.35.3: the service action in its field; the other bits of byte 1 are
                // reserved in these CDBs except SANITIZE's IMMED (bit 7) and AUSE (bit 5).
                one[5] = (byte)((requestedOpcode == ScsiOpcode.Sanitize ? 0xA0 : 0) | requestedAction);
            }

            one[4 + cdbLength - 1] = 0x04;
        }

        var n = 4 + cdbLength;
        if (timeouts && found >= 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(one[n..], 0x0A);
            n += timeoutBytes;
        }

        return c.ReturnData(one[..n], allocation);
    }
}
