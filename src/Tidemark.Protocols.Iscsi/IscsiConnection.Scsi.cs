using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

public sealed partial class IscsiConnection
{
    private readonly Dictionary<int, ScsiNexus> _nexuses = [];
    private readonly Dictionary<uint, PendingCommand> _pending = [];
    private readonly Stack<PendingCommand> _freeCommands = new();

    // Commands waiting for the write budget, oldest first (see IscsiLimits.MaxBufferedWriteBytes).
    private readonly List<PendingCommand> _awaitingBuffer = [];
    private long _grantedBytes;
    private long _heldBytes;
    private readonly byte[] _cdb = new byte[PendingCommand.MaxCdbBytes];

    /// <summary>SenseLength (2 bytes, RFC 7143 11.4.7.2) followed by the sense data.</summary>
    private readonly byte[] _senseSegment = new byte[2 + 252];
    private byte[] _dataIn = [];
    private uint _nextTargetTransferTag;

    private void HandleScsiCommand(in IscsiPdu pdu)
    {
        ScsiCommandPdu.TryRead(pdu.Header, out var command);
        if (_target is null)
        {
            // RFC 7143 4.3: a discovery session carries only text, NOP and logout.
            IscsiProtocolException.Throw(RejectReason.ProtocolError, "SCSI command in a discovery session");
        }

        if (!AcceptCmdSn(command.CmdSN, command.Immediate))
        {
            return;
        }

        var cdbLength = ReadCdb(pdu);
        var expected = command.ExpectedDataTransferLengthBytes;
        var immediate = pdu.DataLengthBytes;
        if (immediate > 0 && (!command.Write || !_parameters.ImmediateData || immediate > _parameters.FirstBurstBytes || immediate > expected))
        {
            // RFC 7143 10.4.4 / 13.11: immediate data needs W, ImmediateData=Yes and at most FirstBurstLength.
            IscsiProtocolException.Throw(RejectReason.ProtocolError, "unexpected or oversized immediate data");
        }

        if (expected > (uint)_limits.MaxCommandDataBytes)
        {
            // Larger than we buffer: refuse before any data is taken (the Block Limits page advertises the cap).
            var sense = SenseData.InvalidFieldInCdb;
            var senseBytes = sense.WriteFixedTo(_senseSegment.AsSpan(2));
            SendStatus(command.InitiatorTaskTag, new ScsiResult(ScsiStatus.CheckCondition, 0, senseBytes, 0), expected, 0);
            return;
        }

        if (!command.Write || expected == 0 || immediate == (int)expected)
        {
            if (command.Read && !command.Write && immediate == 0 && TryStartAsyncRead(command, _cdb.AsSpan(0, cdbLength)))
            {
                return; // answered by the replier once the device read ended (IscsiConnection.AsyncReads.cs)
            }

            if (command.Read && !command.Write && TryStreamRead(_cdb.AsSpan(0, cdbLength), command.InitiatorTaskTag, command.Lun, expected))
            {
                return; // sent in pieces once this PDU is consumed (IscsiConnection.ReadPieces.cs)
            }

            ExecuteWithImmediateData(command, _cdb.AsSpan(0, cdbLength), pdu, immediate);
            return;
        }

        if (_pending.Count >= _limits.CommandWindow || _pending.ContainsKey(command.InitiatorTaskTag))
        {
            // SAM-5 5.3: too many commands waiting for data (or a reused tag): TASK SET FULL.
            SendStatus(command.InitiatorTaskTag, new ScsiResult(ScsiStatus.TaskSetFull, 0, 0, 0), expected, 0);
            return;
        }

        // RFC 7143 13.10/13.14: with InitialR2T=No and F=0, unsolicited Data-Out may follow up to FirstBurstLength.
        var unsolicitedEnd = !_parameters.InitialR2T && !command.Final
            ? Math.Min(_parameters.FirstBurstBytes, (int)expected)
            : immediate;
        var pieceBytes = WritePieceBytesFor(_cdb.AsSpan(0, cdbLength), command.Lun, expected, unsolicitedEnd);
        var granted = _awaitingBuffer.Count == 0 && MayBuffer(pieceBytes > 0 ? pieceBytes : (int)expected);
        var pending = _freeCommands.Count > 0 ? _freeCommands.Pop() : new PendingCommand();
        pending.Start((int)expected, unsolicitedEnd, granted, pieceBytes);
        _heldBytes += pending.Buffer!.Length;
        if (granted)
        {
            _grantedBytes += pending.GrantBytes;
        }

        pending.InitiatorTaskTag = command.InitiatorTaskTag;
        pending.LunField = command.Lun;
        pending.CmdSN = command.CmdSN;
        pending.Read = command.Read;
        _cdb.AsSpan(0, cdbLength).CopyTo(pending.Cdb);
        pending.CdbLength = cdbLength;
        pending.NextR2TOffset = pending.UnsolicitedEnd;

        // Known before its data is taken: a source that fails part-way ends the connection, which gives its buffer back.
        _pending.Add(command.InitiatorTaskTag, pending);
        if (pending.Streamed)
        {
            TakeSegment(pending, 0, pdu);
        }
        else
        {
            CopyData(pdu, pending.Buffer.AsSpan(0, immediate));
            pending.ReceivedBytes = immediate;
        }

        if (granted)
        {
            pending.TargetTransferTag = NextTargetTransferTag();
            SendReadyToTransfer(pending);
        }
        else
        {
            // No transfer tag until granted: a solicited Data-Out before its R2T is a protocol error.
            pending.TargetTransferTag = BasicHeaderSegment.ReservedTag;
            _awaitingBuffer.Add(pending);
        }
    }

    /// <summary>Runs a command that came with all its data (or needs none): a WRITE whose data is still in the connection pulls it from there.</summary>
    private void ExecuteWithImmediateData(in ScsiCommandPdu command, ReadOnlySpan<byte> cdb, in IscsiPdu pdu, int immediate)
    {
        var expected = (int)command.ExpectedDataTransferLengthBytes;
        if (pdu.DataSource is { } source && !command.Read && TryParseWrite(cdb, out _, out _, out _))
        {
            // A WRITE of at least SourceWriteBytes whose data all came immediate (IscsiConnection.Payload.cs).
            SendStatus(command.InitiatorTaskTag, RunFrom(command.Lun, cdb, source), (uint)expected, 0);
            return;
        }

        var dataOut = ReadOnlySpan<byte>.Empty;
        byte[]? rented = null;
        if (immediate > 0)
        {
            if (pdu.DataSource is null && pdu.Data.IsSingleSegment)
            {
                dataOut = pdu.Data.FirstSpan;
            }
            else
            {
                rented = ArrayPool<byte>.Shared.Rent(immediate);
                CopyData(pdu, rented.AsSpan(0, immediate));
                dataOut = rented.AsSpan(0, immediate);
            }
        }

        try
        {
            Execute(command.InitiatorTaskTag, command.Lun, cdb, dataOut, expected, command.Read);
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Copies a PDU's data segment into <paramref name="destination"/> (its length), from the input or from the source it was left in.</summary>
    private static void CopyData(in IscsiPdu pdu, Span<byte> destination)
    {
        if (pdu.DataSource is { } source)
        {
            source.Fill(destination);
        }
        else if (!pdu.Data.IsSingleSegment || !Unsafe.AreSame(ref MemoryMarshal.GetReference(pdu.Data.FirstSpan), ref MemoryMarshal.GetReference(destination)))
        {
            pdu.Data.CopyTo(destination); // else it was received in place (IscsiConnection.Payload.cs)
        }
    }

    /// <summary>Bytes of write data this connection holds now for commands waiting for Data-Out.</summary>
    public long BufferedWriteBytes => Interlocked.Read(ref _heldBytes);

    private bool MayBuffer(int bytes) => _grantedBytes == 0 || _grantedBytes + bytes <= _limits.MaxBufferedWriteBytes;

    /// <summary>Gives waiting commands their buffers and R2Ts, oldest first, while the budget allows.</summary>
    private void GrantWaiting()
    {
        while (_awaitingBuffer.Count > 0 && !_closing && MayBuffer(_awaitingBuffer[0].GrantBytes))
        {
            var pending = _awaitingBuffer[0];
            _awaitingBuffer.RemoveAt(0);
            _heldBytes -= pending.Buffer!.Length;
            pending.Grant();
            _heldBytes += pending.Buffer!.Length;
            _grantedBytes += pending.GrantBytes;
            pending.TargetTransferTag = NextTargetTransferTag();
            if (pending.ReceivedBytes >= pending.ExpectedBytes)
            {
                continue; // cannot happen: a command with all its data unsolicited is granted at once
            }

            SendReadyToTransfer(pending);
        }
    }

    private int ReadCdb(in IscsiPdu pdu)
    {
        pdu.Header.Slice(ScsiCommandPdu.CdbOffset, ScsiCommandPdu.CdbLengthBytes).CopyTo(_cdb);
        var length = ScsiCommandPdu.CdbLengthBytes;
        if (pdu.AdditionalHeader.Length == 0)
        {
            return length;
        }

        // RFC 7143 11.2.1.5 / 11.3.5: AHSLength (2), AHSType (1, 01h = extended CDB), reserved, then the CDB tail.
        Span<byte> head = stackalloc byte[4];
        if (pdu.AdditionalHeader.Length < 4)
        {
            IscsiProtocolException.Throw(RejectReason.InvalidPduField, "truncated AHS");
        }

        pdu.AdditionalHeader.Slice(0, 4).CopyTo(head);
        var ahsLength = BinaryPrimitives.ReadUInt16BigEndian(head);
        if (head[2] != 0x01)
        {
            return length;
        }

        var extra = ahsLength - 1;
        if (extra < 0 || 4 + extra > pdu.AdditionalHeader.Length || length + extra > PendingCommand.MaxCdbBytes)
        {
            IscsiProtocolException.Throw(RejectReason.InvalidPduField, "bad extended CDB AHS");
        }

        pdu.AdditionalHeader.Slice(4, extra).CopyTo(_cdb.AsSpan(length));
        return length + extra;
    }

    private uint NextTargetTransferTag()
    {
        // RFC 7143 11.8.1: any value but FFFFFFFFh.
        var tag = _nextTargetTransferTag++;
        return tag == BasicHeaderSegment.ReservedTag ? _nextTargetTransferTag++ : tag;
    }

    private void SendReadyToTransfer(PendingCommand pending)
    {
        // RFC 7143 13.17: at most MaxOutstandingR2T bursts of at most MaxBurstLength each.
        while (pending.OutstandingR2T < _parameters.MaxOutstandingR2T && pending.NextR2TOffset < pending.ExpectedBytes)
        {
            var length = Math.Min(_parameters.MaxBurstBytes, pending.ExpectedBytes - pending.NextR2TOffset);
            new ReadyToTransferPdu(pending.LunField, pending.InitiatorTaskTag, pending.TargetTransferTag, Sequence,
                pending.NextR2TSN++, (uint)pending.NextR2TOffset, (uint)length).WriteTo(_outHeader);
            SendPdu([]);
            pending.NextR2TOffset += length;
            pending.OutstandingR2T++;
        }
    }

    private void HandleDataOut(in IscsiPdu pdu)
    {
        DataOutPdu.TryRead(pdu.Header, out var data);
        if (!_pending.TryGetValue(data.InitiatorTaskTag, out var pending))
        {
            // The command already ended (refused early or aborted): its remaining data is dropped.
            return;
        }

        var length = pdu.DataLengthBytes;
        var solicited = data.TargetTransferTag != BasicHeaderSegment.ReservedTag;
        var limit = solicited ? pending.ExpectedBytes : pending.UnsolicitedEnd;
        if (solicited && data.TargetTransferTag != pending.TargetTransferTag)
        {
            IscsiProtocolException.Throw(RejectReason.InvalidPduField, "Data-Out with an unknown target transfer tag");
        }

        if (data.BufferOffset > (uint)limit || length > limit - (int)data.BufferOffset)
        {
            // RFC 7143 11.7.5: data outside the expected range is a protocol error.
            IscsiProtocolException.Throw(RejectReason.ProtocolError, "Data-Out beyond the expected data transfer length");
        }

        if (data.DataSN != pending.ExpectedDataSN)
        {
            // RFC 7143 7.2.2: a DataSN gap, repeat or reversal implies a Data-Out lost to a digest error.
            // At ErrorRecoveryLevel 0 there is no recovery R2T, so 7.2.1 b) applies: take the rest of the
            // task's data, then end it with CHECK CONDITION, "protocol service CRC error" (11.4.7.2).
            // Nothing is written; the connection and the session's other tasks carry on.
            pending.DataSequenceError = true;
        }

        pending.ExpectedDataSN = data.Final ? 0 : pending.ExpectedDataSN + 1;
        if (pending.Streamed)
        {
            TakeSegment(pending, (int)data.BufferOffset, pdu);
        }
        else
        {
            CopyData(pdu, pending.Buffer.AsSpan((int)data.BufferOffset, length));
            pending.ReceivedBytes += length;
        }

        if (solicited && data.Final)
        {
            pending.OutstandingR2T--;
        }

        if (pending.ReceivedBytes >= pending.ExpectedBytes)
        {
            if (!pending.Granted)
            {
                // Only repeated unsolicited data can get here (it counts bytes, not coverage).
                IscsiProtocolException.Throw(RejectReason.ProtocolError, "more unsolicited Data-Out than FirstBurstLength");
            }

            _pending.Remove(pending.InitiatorTaskTag);
            try
            {
                if (pending.Streamed && !pending.DataSequenceError)
                {
                    CompleteStreamed(pending);
                }
                else if (pending.DataSequenceError)
                {
                    var senseBytes = SenseData.ProtocolServiceCrcError.WriteFixedTo(_senseSegment.AsSpan(2));
                    SendStatus(pending.InitiatorTaskTag, new ScsiResult(ScsiStatus.CheckCondition, 0, senseBytes, pending.ExpectedBytes),
                        (uint)pending.ExpectedBytes, 0);
                }
                else
                {
                    Execute(pending.InitiatorTaskTag, pending.LunField, pending.Cdb.AsSpan(0, pending.CdbLength),
                        pending.Buffer.AsSpan(0, pending.ExpectedBytes), pending.ExpectedBytes, pending.Read);
                }
            }
            finally
            {
                ReturnPending(pending);
            }

            return;
        }

        if (solicited && data.Final)
        {
            SendReadyToTransfer(pending);
        }
    }

    private void ReturnPending(PendingCommand pending)
    {
        if (pending.Granted)
        {
            _grantedBytes -= pending.GrantBytes;
        }
        else
        {
            _awaitingBuffer.Remove(pending);
        }

        _heldBytes -= pending.Buffer?.Length ?? 0;
        pending.Reset();
        GrantWaiting();
        if (_freeCommands.Count < _limits.CommandWindow)
        {
            _freeCommands.Push(pending);
        }
    }

    private void Execute(uint itt, ulong lunField, ReadOnlySpan<byte> cdb, ReadOnlySpan<byte> dataOut, int expected, bool read)
    {
        var dataIn = read ? DataInBuffer(expected) : [];
        var result = Run(lunField, cdb, dataOut, dataIn);

        var sent = 0;
        if (read && result.DataInBytes > 0)
        {
            sent = SendDataIn(itt, lunField, dataIn[..result.DataInBytes], result, expected);
            if (sent < 0)
            {
                return;
            }
        }

        SendStatus(itt, result, (uint)expected, (uint)sent);
    }

    /// <summary>Runs one CDB on the addressed logical unit (or answers for the target), sense into the connection's sense buffer.</summary>
    private ScsiResult Run(ulong lunField, ReadOnlySpan<byte> cdb, ReadOnlySpan<byte> dataOut, Span<byte> dataIn = default) =>
        Run(lunField, new ScsiCommand(cdb, dataOut, dataIn, _senseSegment.AsSpan(2)));

    /// <summary>
    /// Runs a WRITE whose data the device pulls from <paramref name="source"/> (the unit makes the same
    /// checks as for any WRITE; what it leaves of the source is the caller's to skip).
    /// </summary>
    private ScsiResult RunFrom(ulong lunField, ReadOnlySpan<byte> cdb, IPayloadSource source)
    {
        var before = source.RemainingBytes;
        var result = Run(lunField, new ScsiCommand(cdb, source, _senseSegment.AsSpan(2)));
        if (result.Status == ScsiStatus.Good)
        {
            Interlocked.Add(ref _writtenFromSourceBytes, before - source.RemainingBytes);
        }

        return result;
    }

    private ScsiResult Run(ulong lunField, in ScsiCommand command)
    {
        var target = _target!;
        var lun = ScsiTargetCommands.DecodeLun(lunField);
        if (command.Cdb[0] == ScsiOpcode.ReportLuns)
        {
            return ScsiTargetCommands.ReportLuns(command, target.LunNumbers);
        }

        return lun >= 0 && target.Units.TryGetValue(lun, out var unit)
            ? unit.Execute(Nexus(lun, unit), command)
            : ScsiTargetCommands.ExecuteForMissingLun(command, target.LunNumbers);
    }

    private Span<byte> DataInBuffer(int length)
    {
        if (_dataIn.Length < length)
        {
            if (_dataIn.Length > 0)
            {
                ArrayPool<byte>.Shared.Return(_dataIn);
            }

            _dataIn = ArrayPool<byte>.Shared.Rent(length);
        }

        return _dataIn.AsSpan(0, length);
    }

    private ScsiNexus Nexus(int lun, ScsiLogicalUnit unit)
    {
        if (!_nexuses.TryGetValue(lun, out var nexus) || !ReferenceEquals(nexus.Unit, unit))
        {
            // SPC-4 7.6.4.6: the iSCSI initiator port name, so reservations follow the port across logins.
            nexus = unit.OpenNexus(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{_initiatorName},i,0x{_isid:x12}"));
            _nexuses[lun] = nexus;
        }

        return nexus;
    }

    /// <summary>
    /// Sends Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength, F at each MaxBurstLength
    /// boundary (RFC 7143 11.7.1); with GOOD status the last one carries it (phase collapse, RFC 7143 11.7.3)
    /// and -1 is returned; otherwise the number of PDUs, for ExpDataSN in the SCSI Response.
    /// </summary>
    private int SendDataIn(uint itt, ulong lunField, ReadOnlySpan<byte> data, in ScsiResult result, int expected)
    {
        var segment = Math.Min(_parameters.InitiatorMaxRecvDataSegmentBytes, _limits.MaxSendDataSegmentBytes);
        var burst = _parameters.MaxBurstBytes;
        var collapse = result.Status == ScsiStatus.Good;
        Residual(result.TransferLengthBytes, expected, out var overflow, out var underflow, out var residual);
        uint dataSn = 0;
        var offset = 0;
        var burstUsed = 0;
        while (offset < data.Length)
        {
            var length = Math.Min(Math.Min(segment, data.Length - offset), burst - burstUsed);
            var last = offset + length == data.Length;
            burstUsed += length;
            var final = last || burstUsed == burst;
            if (burstUsed == burst)
            {
                burstUsed = 0;
            }

            var status = last && collapse;
            new DataInPdu(final, status, overflow, underflow, (byte)result.Status, length, lunField, itt, Sequence, dataSn++, (uint)offset, residual)
                .WriteTo(_outHeader);
            if (status)
            {
                _statSn++;
            }

            SendPdu(data.Slice(offset, length));
            offset += length;
        }

        return collapse ? -1 : (int)dataSn;
    }

    private void SendStatus(uint itt, in ScsiResult result, uint expected, uint dataPdus)
    {
        Residual(result.TransferLengthBytes, expected, out var overflow, out var underflow, out var residual);
        var senseBytes = result.Status == ScsiStatus.CheckCondition ? result.SenseBytes : 0;
        BinaryPrimitives.WriteUInt16BigEndian(_senseSegment, (ushort)senseBytes);
        var segment = senseBytes > 0 ? 2 + senseBytes : 0;
        new ScsiResponsePdu(overflow, underflow, 0, (byte)result.Status, segment, itt, Sequence, dataPdus, residual).WriteTo(_outHeader);
        _statSn++;
        SendPdu(_senseSegment.AsSpan(0, segment));
    }

    /// <summary>RFC 7143 11.4.5: compare the SCSI transfer length with the expected data transfer length.</summary>
    private static void Residual(long transferLength, long expected, out bool overflow, out bool underflow, out uint residual)
    {
        overflow = transferLength > expected;
        underflow = transferLength < expected;
        residual = (uint)Math.Min(Math.Abs(transferLength - expected), uint.MaxValue);
    }

    private void ReleaseSession()
    {
        foreach (var pending in _pending.Values)
        {
            pending.Reset();
        }

        _pending.Clear();
        _awaitingBuffer.Clear();
        _grantedBytes = 0;
        Interlocked.Exchange(ref _heldBytes, 0);
        foreach (var nexus in _nexuses.Values)
        {
            nexus.Unit.CloseNexus(nexus);
        }

        _nexuses.Clear();
        if (_dataIn.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_dataIn);
            _dataIn = [];
        }
    }
}
