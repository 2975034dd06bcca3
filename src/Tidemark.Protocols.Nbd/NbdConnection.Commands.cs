using System.Buffers;
using System.Buffers.Binary;
using System.Text.Unicode;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// proto.md "Request types": one handler per command, each producing exactly one reply. A request
// that is well framed but wrong (bad flags, out of range, storage error) gets an error reply; the
// connection goes on.
public sealed partial class NbdConnection
{
    /// <summary>Error chunks carry a short message; proto.md caps strings at 4096 bytes, we send less.</summary>
    private const int MaxErrorMessageBytes = 512;

    private const int BlockStatusDescriptorBytes = 8;

    private AllocationRun[]? _runs;

    private IBlockDevice Device => _device!;

    private void HandleCommand(in NbdRequestHeader request)
    {
        switch (request.Command)
        {
            case NbdCommand.Read:
                HandleRead(request);
                break;
            case NbdCommand.Flush:
                HandleFlush(request);
                break;
            case NbdCommand.Trim:
                HandleTrim(request);
                break;
            case NbdCommand.Cache:
                HandleCache(request);
                break;
            case NbdCommand.WriteZeroes:
                HandleWriteZeroes(request);
                break;
            case NbdCommand.BlockStatus:
                HandleBlockStatus(request);
                break;
            default:
                // proto.md "Error values": EINVAL for an unknown command.
                ReplyError(request, NbdError.InvalidArgument, "unknown command");
                break;
        }
    }

    private void HandleRead(in NbdRequestHeader request)
    {
        var allowed = NbdCommandFlags.Fua | (_structuredReplies ? NbdCommandFlags.DontFragment : NbdCommandFlags.None);
        if (!CheckFlags(request, allowed) || !CheckRange(request, NbdError.InvalidArgument))
        {
            return;
        }

        if (request.LengthBytes > (uint)_options.MaxPayloadBytes)
        {
            ReplyError(request, NbdError.InvalidArgument, "read longer than the maximum payload");
            return;
        }

        var length = (int)request.LengthBytes;
        if (length == 0)
        {
            // proto.md: behaviour unspecified but SHOULD NOT disconnect; an OFFSET_DATA chunk needs at
            // least one byte, so a structured reply is just the final NONE chunk.
            ReplyOk(request);
            return;
        }

        // The data is read straight into the output pipe's memory behind the reply header; on an
        // error nothing of it is committed and an error reply takes its place.
        var headerBytes = ReadReplyHeaderBytes;
        var span = BeginReply(headerBytes + length);
        try
        {
            Device.Read((long)request.OffsetBytes, span.Slice(headerBytes, length));
        }
        catch (StorageException ex)
        {
            ReplyError(request, NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
            return;
        }
        catch (IOException ex)
        {
            ReplyError(request, NbdError.IoError, ex.Message);
            return;
        }

        WriteReadReplyHeader(span, request, length);
        EndReply(headerBytes + length);
    }

    /// <summary>What precedes the data of a successful READ's reply.</summary>
    private int ReadReplyHeaderBytes => _structuredReplies ? NbdStructuredReplyHeader.SizeBytes + 8 : NbdSimpleReplyHeader.SizeBytes;

    /// <summary>The header of a successful READ's reply at the start of <paramref name="span"/>, in front of its data.</summary>
    private void WriteReadReplyHeader(Span<byte> span, in NbdRequestHeader request, int length)
    {
        if (_structuredReplies)
        {
            // NBD_REPLY_TYPE_OFFSET_DATA: 64 bits offset then the data. It is the only chunk and no
            // error can follow once the data is read, so it carries NBD_REPLY_FLAG_DONE.
            new NbdStructuredReplyHeader(NbdReplyFlags.Done, NbdReplyType.OffsetData, request.Cookie, (uint)(8 + length)).WriteTo(span);
            BinaryPrimitives.WriteUInt64BigEndian(span[NbdStructuredReplyHeader.SizeBytes..], request.OffsetBytes);
        }
        else
        {
            new NbdSimpleReplyHeader(NbdError.None, request.Cookie).WriteTo(span);
        }
    }

    /// <summary>proto.md NBD_CMD_WRITE's checks; on a failed one replies with its error and returns false.</summary>
    private bool ValidateWrite(in NbdRequestHeader request) =>
        CheckFlags(request, NbdCommandFlags.Fua) && CheckWritable(request) && CheckRange(request, NbdError.NoSpace);

    /// <summary>proto.md NBD_CMD_FLUSH: offset and length are reserved and MUST be zero.</summary>
    private void HandleFlush(in NbdRequestHeader request)
    {
        if (!CheckFlags(request, NbdCommandFlags.Fua))
        {
            return;
        }

        if (request.OffsetBytes != 0 || request.LengthBytes != 0)
        {
            ReplyError(request, NbdError.InvalidArgument, "flush offset and length must be zero");
            return;
        }

        if (TryDeviceCall(request, static (device, _, _) => device.Flush()))
        {
            ReplyOk(request);
        }
    }

    /// <summary>
    /// proto.md NBD_CMD_TRIM: a hint; the server MAY round offset up and length down to its own
    /// alignment, so unaligned edges are left alone instead of failing.
    /// </summary>
    private void HandleTrim(in NbdRequestHeader request)
    {
        if (!CheckFlags(request, NbdCommandFlags.Fua) || !CheckWritable(request) || !CheckRange(request, NbdError.InvalidArgument))
        {
            return;
        }

        var block = (ulong)Device.LogicalBlockSizeBytes;
        var start = (request.OffsetBytes + block - 1) / block * block;
        var end = (request.OffsetBytes + request.LengthBytes) / block * block;
        if (end > start)
        {
            var unmap = TryDeviceCall(request, static (device, offset, length) => device.Unmap(offset, length), (long)start, (long)(end - start));
            if (!unmap || !FlushIfFua(request))
            {
                return;
            }
        }

        ReplyOk(request);
    }

    /// <summary>proto.md NBD_CMD_CACHE: a hint we have nothing to do for; flags other than FUA are rejected.</summary>
    private void HandleCache(in NbdRequestHeader request)
    {
        if (CheckFlags(request, NbdCommandFlags.Fua) && CheckRange(request, NbdError.InvalidArgument))
        {
            ReplyOk(request);
        }
    }

    /// <summary>
    /// proto.md NBD_CMD_WRITE_ZEROES. Without NO_HOLE whole units are unmapped (they read as zeros on a
    /// thin device), which is faster than writing, so FAST_ZERO succeeds; FAST_ZERO with NO_HOLE would
    /// have to provision and write, so it fails at once with ENOTSUP as the spec requires.
    /// </summary>
    private void HandleWriteZeroes(in NbdRequestHeader request)
    {
        const NbdCommandFlags allowed = NbdCommandFlags.Fua | NbdCommandFlags.NoHole | NbdCommandFlags.FastZero;
        if (!CheckFlags(request, allowed) || !CheckWritable(request) || !CheckRange(request, NbdError.NoSpace))
        {
            return;
        }

        var noHole = (request.Flags & NbdCommandFlags.NoHole) != 0;
        if (noHole && (request.Flags & NbdCommandFlags.FastZero) != 0)
        {
            ReplyError(request, NbdError.NotSupported, "fast zero cannot provision the range");
            return;
        }

        if (request.LengthBytes != 0)
        {
            var zeroed = noHole
                ? TryDeviceCall(request, static (device, offset, length) => device.WriteZeroes(offset, length, mayUnmap: false), (long)request.OffsetBytes, request.LengthBytes)
                : TryDeviceCall(request, static (device, offset, length) => device.WriteZeroes(offset, length, mayUnmap: true), (long)request.OffsetBytes, request.LengthBytes);
            if (!zeroed || !FlushIfFua(request))
            {
                return;
            }
        }

        ReplyOk(request);
    }

    /// <summary>
    /// proto.md NBD_CMD_BLOCK_STATUS for base:allocation: one NBD_REPLY_TYPE_BLOCK_STATUS chunk with
    /// consecutive extents from the requested offset; a hole reads as zeros, so HOLE|ZERO.
    /// </summary>
    private void HandleBlockStatus(in NbdRequestHeader request)
    {
        if (!CheckFlags(request, NbdCommandFlags.Fua | NbdCommandFlags.RequestOne))
        {
            return;
        }

        if (!_blockStatusEnabled)
        {
            // proto.md: SHOULD reply EINVAL when no metadata context was selected.
            ReplyError(request, NbdError.InvalidArgument, "no metadata context was negotiated");
            return;
        }

        if (!CheckRange(request, NbdError.InvalidArgument))
        {
            return;
        }

        if (request.LengthBytes == 0)
        {
            ReplyError(request, NbdError.InvalidArgument, "block status of zero bytes");
            return;
        }

        // The request length is a hint: query whole logical blocks (the device requires them) but
        // at least one, so the reply always makes progress.
        var block = (uint)Device.LogicalBlockSizeBytes;
        var queryLength = Math.Max(request.LengthBytes / block * block, block);
        queryLength = (uint)Math.Min(queryLength, (ulong)Device.SizeBytes - request.OffsetBytes);
        var requestOne = (request.Flags & NbdCommandFlags.RequestOne) != 0;
        if (!_allocationContextSelected)
        {
            WriteChangedChunk(request, (long)request.OffsetBytes, queryLength, requestOne, last: true);
            return;
        }

        _runs ??= ArrayPool<AllocationRun>.Shared.Rent(_options.MaxBlockStatusExtents);
        var runs = _runs.AsSpan(0, Math.Min(_runs.Length, _options.MaxBlockStatusExtents));
        if ((request.Flags & NbdCommandFlags.RequestOne) != 0)
        {
            runs = runs[..1];
        }

        int count;
        try
        {
            count = Device.GetAllocationStatus((long)request.OffsetBytes, queryLength, runs);
        }
        catch (StorageException ex)
        {
            ReplyError(request, NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
            return;
        }
        catch (IOException ex)
        {
            ReplyError(request, NbdError.IoError, ex.Message);
            return;
        }

        if (count <= 0)
        {
            ReplyError(request, NbdError.IoError, "the device reported no allocation status");
            return;
        }

        var payload = 4 + (count * BlockStatusDescriptorBytes);
        var span = BeginReply(NbdStructuredReplyHeader.SizeBytes + payload);
        var body = span[NbdStructuredReplyHeader.SizeBytes..];
        BinaryPrimitives.WriteUInt32BigEndian(body, AllocationContextId);
        var written = 0;
        var previous = NbdAllocationState.None;
        for (var i = 0; i < count; i++)
        {
            var run = runs[i];
            var state = run.State == AllocationState.Hole ? NbdAllocationState.Hole | NbdAllocationState.Zero : NbdAllocationState.None;
            var at = 4 + (written * BlockStatusDescriptorBytes);
            if (written > 0 && state == previous)
            {
                // Merge runs the device reported separately: proto.md SHOULD use different status
                // values between consecutive descriptors.
                var merged = BinaryPrimitives.ReadUInt32BigEndian(body[(at - BlockStatusDescriptorBytes)..]) + (uint)run.LengthBytes;
                BinaryPrimitives.WriteUInt32BigEndian(body[(at - BlockStatusDescriptorBytes)..], merged);
                continue;
            }

            BinaryPrimitives.WriteUInt32BigEndian(body[at..], (uint)run.LengthBytes);
            BinaryPrimitives.WriteUInt32BigEndian(body[(at + 4)..], (uint)state);
            previous = state;
            written++;
        }

        payload = 4 + (written * BlockStatusDescriptorBytes);
        var more = _changedRanges is not null;
        new NbdStructuredReplyHeader(more ? NbdReplyFlags.None : NbdReplyFlags.Done, NbdReplyType.BlockStatus, request.Cookie, (uint)payload).WriteTo(span);
        EndReply(NbdStructuredReplyHeader.SizeBytes + payload);
        if (more)
        {
            WriteChangedChunk(request, (long)request.OffsetBytes, queryLength, requestOne, last: true);
        }
    }

    /// <summary>
    /// The tidemark:changed chunk: descriptors from the requested offset, flag 1 where the range
    /// differs from the base snapshot, 0 where it does not (as QEMU's dirty bitmaps report).
    /// </summary>
    private void WriteChangedChunk(in NbdRequestHeader request, long offset, long length, bool requestOne, bool last)
    {
        var ranges = _changedRanges!;
        var end = offset + length;
        var maxDescriptors = requestOne ? 1 : _options.MaxBlockStatusExtents;
        var descriptors = new List<(uint Length, uint Flags)>();

        // The first range that ends after the offset (ranges are sorted and do not overlap).
        int lo = 0, hi = ranges.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (ranges[mid].OffsetBytes + ranges[mid].LengthBytes <= offset)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }

        var at = offset;
        for (var i = lo; at < end && descriptors.Count < maxDescriptors;)
        {
            if (i < ranges.Count && ranges[i].LengthBytes <= 0)
            {
                i++; // an empty range says nothing
                continue;
            }

            if (i < ranges.Count && ranges[i].OffsetBytes <= at)
            {
                var stop = Math.Min(end, ranges[i].OffsetBytes + ranges[i].LengthBytes);
                descriptors.Add(((uint)Math.Min(stop - at, uint.MaxValue & ~4095u), 1));
                at += descriptors[^1].Length;
                if (at >= ranges[i].OffsetBytes + ranges[i].LengthBytes)
                {
                    i++;
                }
            }
            else
            {
                var stop = Math.Min(end, i < ranges.Count ? ranges[i].OffsetBytes : end);
                descriptors.Add(((uint)Math.Min(stop - at, uint.MaxValue & ~4095u), 0));
                at += descriptors[^1].Length;
            }
        }

        var payload = 4 + (descriptors.Count * BlockStatusDescriptorBytes);
        var span = BeginReply(NbdStructuredReplyHeader.SizeBytes + payload);
        new NbdStructuredReplyHeader(last ? NbdReplyFlags.Done : NbdReplyFlags.None, NbdReplyType.BlockStatus, request.Cookie, (uint)payload).WriteTo(span);
        var body = span[NbdStructuredReplyHeader.SizeBytes..];
        BinaryPrimitives.WriteUInt32BigEndian(body, ChangedContextId);
        for (var d = 0; d < descriptors.Count; d++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(body[(4 + (d * BlockStatusDescriptorBytes))..], descriptors[d].Length);
            BinaryPrimitives.WriteUInt32BigEndian(body[(8 + (d * BlockStatusDescriptorBytes))..], descriptors[d].Flags);
        }

        EndReply(NbdStructuredReplyHeader.SizeBytes + payload);
    }

    /// <summary>proto.md "Error values": EINVAL for a flag not documented for the command.</summary>
    private bool CheckFlags(in NbdRequestHeader request, NbdCommandFlags allowed)
    {
        if ((request.Flags & ~allowed) == 0)
        {
            return true;
        }

        ReplyError(request, NbdError.InvalidArgument, "command flag not valid for this command");
        return false;
    }

    /// <summary>proto.md: EPERM for a write or trim on a read-only export.</summary>
    private bool CheckWritable(in NbdRequestHeader request)
    {
        if (_export!.IsReadOnly)
        {
            ReplyError(request, NbdError.NotPermitted, "the export is read-only");
            return false;
        }

        // The same medium's SCSI Software Write Protect (set by an iSCSI initiator's MODE SELECT)
        // holds for every client of the volume, not only for iSCSI ones.
        if (_export.Device.SoftwareWriteProtected)
        {
            ReplyError(request, NbdError.NotPermitted, "the volume is software write protected (SCSI control mode page SWP, set by an iSCSI initiator); it is cleared by MODE SELECT or a server restart");
            return false;
        }

        return true;
    }

    /// <summary>
    /// proto.md "Error values": a range beyond the end gets ENOSPC for writes and EINVAL otherwise.
    /// Checked here, in unsigned arithmetic, so a huge offset cannot overflow into the device.
    /// </summary>
    private bool CheckRange(in NbdRequestHeader request, NbdError beyondEnd)
    {
        var size = (ulong)Device.SizeBytes;
        if (request.OffsetBytes <= size && request.LengthBytes <= size - request.OffsetBytes)
        {
            return true;
        }

        ReplyError(request, beyondEnd, "range beyond the end of the export");
        return false;
    }

    private bool FlushIfFua(in NbdRequestHeader request) =>
        (request.Flags & NbdCommandFlags.Fua) == 0 || TryDeviceCall(request, static (device, _, _) => device.Flush());

    /// <summary>Runs a device call that has no result; on a storage error replies and returns false.</summary>
    private bool TryDeviceCall(in NbdRequestHeader request, Action<IBlockDevice, long, long> call, long offsetBytes = 0, long lengthBytes = 0)
    {
        try
        {
            call(Device, offsetBytes, lengthBytes);
            return true;
        }
        catch (StorageException ex)
        {
            ReplyError(request, NbdErrorMapping.FromStorageError(ex.Error), ex.Message);
        }
        catch (IOException ex)
        {
            ReplyError(request, NbdError.IoError, ex.Message);
        }

        return false;
    }

    private void ReplyOk(in NbdRequestHeader request)
    {
        if (_structuredReplies && request.Command == NbdCommand.Read)
        {
            // proto.md: with structured replies a READ MUST NOT get a simple reply.
            var chunk = BeginReply(NbdStructuredReplyHeader.SizeBytes);
            new NbdStructuredReplyHeader(NbdReplyFlags.Done, NbdReplyType.None, request.Cookie, 0).WriteTo(chunk);
            EndReply(NbdStructuredReplyHeader.SizeBytes);
            return;
        }

        // Replies without payload MAY be simple even when structured replies were negotiated.
        var span = BeginReply(NbdSimpleReplyHeader.SizeBytes);
        new NbdSimpleReplyHeader(NbdError.None, request.Cookie).WriteTo(span);
        EndReply(NbdSimpleReplyHeader.SizeBytes);
    }

    private void ReplyError(in NbdRequestHeader request, NbdError error, string message)
    {
        if (!_structuredReplies)
        {
            var simple = BeginReply(NbdSimpleReplyHeader.SizeBytes);
            new NbdSimpleReplyHeader(error, request.Cookie).WriteTo(simple);
            EndReply(NbdSimpleReplyHeader.SizeBytes);
            return;
        }

        // NBD_REPLY_TYPE_ERROR: 32 bits error, 16 bits message length, message. proto.md: SHOULD
        // prefer structured errors, as they can carry a message for a human.
        const int fixedBytes = NbdStructuredReplyHeader.SizeBytes + 6;
        var span = BeginReply(fixedBytes + MaxErrorMessageBytes);
        Utf8.FromUtf16(message, span.Slice(fixedBytes, MaxErrorMessageBytes), out _, out var messageBytes);
        new NbdStructuredReplyHeader(NbdReplyFlags.Done, NbdReplyType.Error, request.Cookie, (uint)(6 + messageBytes)).WriteTo(span);
        BinaryPrimitives.WriteUInt32BigEndian(span[NbdStructuredReplyHeader.SizeBytes..], (uint)error);
        BinaryPrimitives.WriteUInt16BigEndian(span[(NbdStructuredReplyHeader.SizeBytes + 4)..], (ushort)messageBytes);
        EndReply(fixedBytes + messageBytes);
    }
}
