using System.Buffers;
using System.Globalization;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

public sealed partial class IscsiConnection
{
    private byte[]? _textPending;
    private int _textPendingOffset;
    private uint _textPendingTag;

    private int SendSegmentBytes => Math.Min(_parameters.InitiatorMaxRecvDataSegmentBytes, _limits.MaxSendDataSegmentBytes);

    private void HandleNopOut(in IscsiPdu pdu)
    {
        NopOutPdu.TryRead(pdu.Header, out var nop);
        if (!AcceptCmdSn(nop.CmdSN, nop.Immediate) || nop.InitiatorTaskTag == BasicHeaderSegment.ReservedTag)
        {
            // RFC 7143 11.18.1: ITT FFFFFFFFh is an answer to our NOP-In (or a ping wanting no reply).
            return;
        }

        // RFC 7143 11.19: echo the ping data, limited to what the initiator accepts.
        var length = (int)Math.Min(pdu.Data.Length, SendSegmentBytes);
        var echo = ArrayPool<byte>.Shared.Rent(Math.Max(length, 1));
        try
        {
            pdu.Data.Slice(0, length).CopyTo(echo);
            new NopInPdu(length, nop.Lun, nop.InitiatorTaskTag, BasicHeaderSegment.ReservedTag, Sequence).WriteTo(_outHeader);
            _statSn++;
            SendPdu(echo.AsSpan(0, length));
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(echo);
        }
    }

    private void HandleTextRequest(in IscsiPdu pdu)
    {
        TextRequestPdu.TryRead(pdu.Header, out var request);
        if (!AcceptCmdSn(request.CmdSN, request.Immediate))
        {
            return;
        }

        if (request.TargetTransferTag != BasicHeaderSegment.ReservedTag && _textPending is not null && request.TargetTransferTag == _textPendingTag)
        {
            // RFC 7143 11.10.4: an empty request with our TTT asks for the next part of a long response.
            SendTextPart(request);
            return;
        }

        if (pdu.Data.Length > _limits.MaxTextBytes || request.Continue)
        {
            // Long multi-PDU text requests are not needed by any key this target understands.
            IscsiProtocolException.Throw(RejectReason.ProtocolError, "text request continuation is not supported");
        }

        var raw = ArrayPool<byte>.Shared.Rent(Math.Max((int)pdu.Data.Length, 1));
        var pairs = new List<KeyValuePair<string, string>>();
        bool parsed;
        try
        {
            pdu.Data.CopyTo(raw);
            parsed = TextParameters.TryParse(raw.AsSpan(0, (int)pdu.Data.Length), pairs);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(raw);
        }

        if (!parsed)
        {
            IscsiProtocolException.Throw(RejectReason.ProtocolError, "malformed text request");
        }

        var text = new ArrayBufferWriter<byte>();
        foreach (var (key, value) in pairs)
        {
            if (key == "SendTargets")
            {
                AppendSendTargets(text, value);
            }
            else
            {
                TextParameters.Append(text, key, "NotUnderstood");
            }
        }

        _textPending = text.WrittenSpan.ToArray();
        _textPendingOffset = 0;
        _textPendingTag = NextTargetTransferTag();
        SendTextPart(request);
    }

    private void AppendSendTargets(ArrayBufferWriter<byte> text, string value)
    {
        // RFC 7143 Appendix C: "All" in discovery sessions; in a normal session only the current target.
        IEnumerable<IscsiTarget> targets = _target is not null
            ? [_target]
            : value == "All"
                ? _catalog.VisibleTo(_initiatorName!)
                : _catalog.VisibleTo(_initiatorName!).Where(t => string.Equals(t.Name, value, StringComparison.OrdinalIgnoreCase));
        foreach (var target in targets)
        {
            TextParameters.Append(text, "TargetName", target.Name);
            if (_portalAddress is not null)
            {
                TextParameters.Append(text, "TargetAddress", string.Create(CultureInfo.InvariantCulture, $"{_portalAddress},{_limits.TargetPortalGroupTag}"));
            }
        }
    }

    private void SendTextPart(in TextRequestPdu request)
    {
        var all = _textPending!;
        var length = Math.Min(SendSegmentBytes, all.Length - _textPendingOffset);
        var last = _textPendingOffset + length == all.Length;

        // RFC 7143 11.11: F=1 ends the exchange; otherwise C=1 and a TTT the initiator sends back.
        new TextResponsePdu(last, !last, length, request.Lun, request.InitiatorTaskTag, last ? BasicHeaderSegment.ReservedTag : _textPendingTag, Sequence)
            .WriteTo(_outHeader);
        _statSn++;
        SendPdu(all.AsSpan(_textPendingOffset, length));
        _textPendingOffset += length;
        if (last)
        {
            _textPending = null;
        }
    }

    private void HandleLogout(in IscsiPdu pdu)
    {
        LogoutRequestPdu.TryRead(pdu.Header, out var request);
        AcceptCmdSn(request.CmdSN, request.Immediate);

        // RFC 7143 11.15.1: 0 closed; 2 "connection recovery is not supported" for reason 2 (ERL 0).
        var response = request.ReasonCode == 2 ? (byte)2 : (byte)0;
        new LogoutResponsePdu(response, request.InitiatorTaskTag, Sequence, 0, 0).WriteTo(_outHeader);
        _statSn++;
        SendPdu([]);
        _closing = true;
    }

    private void HandleTaskManagement(in IscsiPdu pdu)
    {
        TaskManagementRequestPdu.TryRead(pdu.Header, out var request);
        var cmdSn = request.CmdSN;
        if (!AcceptCmdSn(cmdSn, request.Immediate))
        {
            return;
        }

        var response = ExecuteTaskManagement(request);
        new TaskManagementResponsePdu(response, request.InitiatorTaskTag, Sequence).WriteTo(_outHeader);
        _statSn++;
        SendPdu([]);
        if (request.Function == TaskManagementFunction.TargetColdReset && response == TaskManagementResponse.FunctionComplete)
        {
            // SAM-5 6.4: a cold reset ends every nexus, this connection included.
            _closing = true;
        }
    }

    private TaskManagementResponse ExecuteTaskManagement(in TaskManagementRequestPdu request)
    {
        var target = _target;
        if (target is null)
        {
            return TaskManagementResponse.FunctionRejected;
        }

        var lun = Scsi.ScsiTargetCommands.DecodeLun(request.Lun);
        switch (request.Function)
        {
            case TaskManagementFunction.AbortTask:
                if (_pending.Remove(request.ReferencedTaskTag, out var task))
                {
                    ReturnPending(task);
                    return TaskManagementResponse.FunctionComplete;
                }

                if (AbortReads(null, request.ReferencedTaskTag))
                {
                    // A READ in flight: its answer is dropped when the device is done with it (IscsiConnection.AsyncReads.cs).
                    return TaskManagementResponse.FunctionComplete;
                }

                // RFC 7143 11.5.1 b/c: a command not yet received (RefCmdSN still inside the window) is
                // considered received and aborted; one that already completed no longer exists.
                return (int)(request.RefCmdSN - _expCmdSn) >= 0 && (int)(request.RefCmdSN - Sequence.MaxCmdSN) <= 0
                    ? TaskManagementResponse.FunctionComplete
                    : TaskManagementResponse.TaskDoesNotExist;
            case TaskManagementFunction.AbortTaskSet:
            case TaskManagementFunction.ClearTaskSet:
                if (!target.Units.ContainsKey(lun))
                {
                    return TaskManagementResponse.LunDoesNotExist;
                }

                AbortPending(request.Lun);
                return TaskManagementResponse.FunctionComplete;
            case TaskManagementFunction.LogicalUnitReset:
                if (!target.Units.TryGetValue(lun, out var unit))
                {
                    return TaskManagementResponse.LunDoesNotExist;
                }

                AbortPending(request.Lun);
                unit.Reset();
                return TaskManagementResponse.FunctionComplete;
            case TaskManagementFunction.TargetWarmReset:
            case TaskManagementFunction.TargetColdReset:
                AbortPending(null);
                foreach (var each in target.Units.Values)
                {
                    each.TargetReset();
                }

                return TaskManagementResponse.FunctionComplete;
            case TaskManagementFunction.TaskReassign:
                return TaskManagementResponse.ReassignmentNotSupported;
            default:
                return TaskManagementResponse.FunctionNotSupported;
        }
    }

    private void AbortPending(ulong? lunField)
    {
        AbortReads(lunField);
        List<uint>? aborted = null;
        foreach (var (tag, pending) in _pending)
        {
            if (lunField is null || pending.LunField == lunField)
            {
                (aborted ??= []).Add(tag);
            }
        }

        foreach (var tag in aborted ?? [])
        {
            _pending.Remove(tag, out var pending);
            ReturnPending(pending!);
        }
    }
}
