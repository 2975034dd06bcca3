namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.6: Task Management Function Response (opcode 22h).</summary>
public readonly record struct TaskManagementResponsePdu(TaskManagementResponse Response, uint InitiatorTaskTag, TargetSequence Sequence)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out TaskManagementResponsePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.TaskManagementResponse))
        {
            pdu = default;
            return false;
        }

        pdu = new TaskManagementResponsePdu(
            (TaskManagementResponse)bhs[2],
            BasicHeaderSegment.U32(bhs, 16),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.TaskManagementResponse, false, 0x80, 0, 0, InitiatorTaskTag);
        bhs[2] = (byte)Response;
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
    }
}
