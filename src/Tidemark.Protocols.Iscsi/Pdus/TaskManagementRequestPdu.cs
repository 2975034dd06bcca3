namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.5: Task Management Function Request (opcode 02h).</summary>
public readonly record struct TaskManagementRequestPdu(
    bool Immediate,
    TaskManagementFunction Function,
    ulong Lun,
    uint InitiatorTaskTag,
    uint ReferencedTaskTag,
    uint CmdSN,
    uint ExpStatSN,
    uint RefCmdSN,
    uint ExpDataSN)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out TaskManagementRequestPdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.TaskManagementRequest))
        {
            pdu = default;
            return false;
        }

        pdu = new TaskManagementRequestPdu(
            (bhs[0] & 0x40) != 0,
            (TaskManagementFunction)(bhs[1] & 0x7F),
            BasicHeaderSegment.U64(bhs, 8),
            BasicHeaderSegment.U32(bhs, 16),
            BasicHeaderSegment.U32(bhs, 20),
            BasicHeaderSegment.U32(bhs, 24),
            BasicHeaderSegment.U32(bhs, 28),
            BasicHeaderSegment.U32(bhs, 32),
            BasicHeaderSegment.U32(bhs, 36));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.TaskManagementRequest, Immediate, (byte)(0x80 | ((byte)Function & 0x7F)), 0, Lun, InitiatorTaskTag);
        BasicHeaderSegment.U32(bhs, 20, ReferencedTaskTag);
        BasicHeaderSegment.U32(bhs, 24, CmdSN);
        BasicHeaderSegment.U32(bhs, 28, ExpStatSN);
        BasicHeaderSegment.U32(bhs, 32, RefCmdSN);
        BasicHeaderSegment.U32(bhs, 36, ExpDataSN);
    }
}

/// <summary>RFC 7143 11.5.1 function codes.</summary>
public enum TaskManagementFunction : byte
{
    AbortTask = 1,
    AbortTaskSet = 2,
    ClearAca = 3,
    ClearTaskSet = 4,
    LogicalUnitReset = 5,
    TargetWarmReset = 6,
    TargetColdReset = 7,
    TaskReassign = 8,
}

/// <summary>RFC 7143 11.6.1 response codes.</summary>
public enum TaskManagementResponse : byte
{
    FunctionComplete = 0,
    TaskDoesNotExist = 1,
    LunDoesNotExist = 2,
    TaskStillAllegiant = 3,
    ReassignmentNotSupported = 4,
    FunctionNotSupported = 5,
    AuthorizationFailed = 6,
    FunctionRejected = 255,
}
