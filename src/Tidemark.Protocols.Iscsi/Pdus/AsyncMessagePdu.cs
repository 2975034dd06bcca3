namespace Tidemark.Protocols.Iscsi.Pdus;

/// <summary>RFC 7143 11.9.1: the AsyncEvent codes the target sends.</summary>
public enum AsyncEvent : byte
{
    ScsiAsyncEvent = 0,

    /// <summary>The initiator must log out within Parameter3 seconds.</summary>
    LogoutRequest = 1,
    DroppingConnection = 2,
    DroppingAllConnections = 3,
    RequestNegotiation = 4,
}

/// <summary>
/// RFC 7143 11.9: Asynchronous Message (opcode 32h), unsolicited from the target. ITT is FFFFFFFFh and
/// the LUN field is only meaningful for a SCSI asynchronous event; Parameter1-3 depend on the event.
/// </summary>
public readonly record struct AsyncMessagePdu(
    AsyncEvent Event,
    ushort Parameter1,
    ushort Parameter2,
    ushort Parameter3,
    TargetSequence Sequence)
{
    public static bool TryRead(ReadOnlySpan<byte> bhs, out AsyncMessagePdu pdu)
    {
        if (!BasicHeaderSegment.Is(bhs, IscsiOpcode.AsyncMessage))
        {
            pdu = default;
            return false;
        }

        pdu = new AsyncMessagePdu(
            (AsyncEvent)bhs[36],
            BasicHeaderSegment.U16(bhs, 38),
            BasicHeaderSegment.U16(bhs, 40),
            BasicHeaderSegment.U16(bhs, 42),
            new TargetSequence(BasicHeaderSegment.U32(bhs, 24), BasicHeaderSegment.U32(bhs, 28), BasicHeaderSegment.U32(bhs, 32)));
        return true;
    }

    public void WriteTo(Span<byte> bhs)
    {
        BasicHeaderSegment.WriteCommon(bhs, IscsiOpcode.AsyncMessage, false, 0x80, 0, 0, BasicHeaderSegment.ReservedTag);
        BasicHeaderSegment.U32(bhs, 20, BasicHeaderSegment.ReservedTag); // reserved, all ones
        BasicHeaderSegment.U32(bhs, 24, Sequence.StatSN);
        BasicHeaderSegment.U32(bhs, 28, Sequence.ExpCmdSN);
        BasicHeaderSegment.U32(bhs, 32, Sequence.MaxCmdSN);
        bhs[36] = (byte)Event;
        bhs[37] = 0; // AsyncVCode: no vendor code
        BasicHeaderSegment.U16(bhs, 38, Parameter1);
        BasicHeaderSegment.U16(bhs, 40, Parameter2);
        BasicHeaderSegment.U16(bhs, 42, Parameter3);
    }
}
