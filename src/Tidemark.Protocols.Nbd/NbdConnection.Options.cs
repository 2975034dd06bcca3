using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// proto.md "Option types": one handler per option. Handlers only write replies into the output;
// NegotiateAsync flushes after each option because the client waits for the final reply.
public sealed partial class NbdConnection
{
    /// <summary>The only metadata context we serve (proto.md "base:allocation metadata context").</summary>
    private const uint AllocationContextId = 1;

    private const int ExportNameReplyBytes = 10;
    private const int ExportNameReservedZeroes = 124;

    private static ReadOnlySpan<byte> AllocationContextName => "base:allocation"u8;

    private static ReadOnlySpan<byte> BaseNamespaceWildcard => "base:"u8;

    /// <summary>Changed blocks since a snapshot: "tidemark:changed:" followed by the snapshot's name.</summary>
    private const uint ChangedContextId = 2;

    private const string ChangedContextPrefix = "tidemark:changed:";

    private static ReadOnlySpan<byte> TidemarkNamespaceWildcard => "tidemark:"u8;

    // The changed ranges of the selected tidemark:changed context, computed when it was selected.
    private IReadOnlyList<(long OffsetBytes, long LengthBytes)>? _changedRanges;
    private string? _changedContextName;

    private bool _structuredReplies;
    private NbdExport? _metaContextExport;
    private bool _allocationContextSelected;

    private OptionOutcome HandleOption(ReadOnlySpan<byte> data) => _option.Option switch
    {
        NbdOptionType.ExportName => HandleExportName(data),
        NbdOptionType.Abort => HandleAbort(),
        NbdOptionType.List => HandleList(data),
        NbdOptionType.StartTls => HandleStartTls(data),
        NbdOptionType.Info or NbdOptionType.Go => HandleInfoOrGo(data),
        NbdOptionType.StructuredReply => HandleStructuredReply(data),
        NbdOptionType.ListMetaContext or NbdOptionType.SetMetaContext => HandleMetaContext(data),
        _ => ReplyOptionError(NbdOptionReplyType.ErrorUnsupported, "option not supported by this server"),
    };

    /// <summary>
    /// proto.md NBD_OPT_EXPORT_NAME: no error reply exists, so an unknown export ends the session.
    /// On success: 64 bits size, 16 bits flags, 124 zero bytes unless NBD_FLAG_C_NO_ZEROES.
    /// </summary>
    private OptionOutcome HandleExportName(ReadOnlySpan<byte> data)
    {
        // An export that requires TLS is unknown to a plain-text NBD_OPT_EXPORT_NAME (it has no way to say "TLS required").
        if (!TryDecodeString(data, out var name) || !_catalog.TryGet(name, out var export) || (export.TlsRequired && !_tlsActive))
        {
            return OptionOutcome.UnknownExport;
        }

        var size = export.Device.SizeBytes;
        var flags = TransmissionFlagsFor(export);
        var length = ExportNameReplyBytes + (_noZeroes ? 0 : ExportNameReservedZeroes);
        var span = BeginReply(length);
        BinaryPrimitives.WriteUInt64BigEndian(span, (ulong)size);
        BinaryPrimitives.WriteUInt16BigEndian(span[8..], (ushort)flags);
        span[ExportNameReplyBytes..].Clear();
        EndReply(length);
        EnterTransmission(export, flags);
        return OptionOutcome.EnterTransmission;
    }

    /// <summary>proto.md NBD_OPT_ABORT: the server MUST reply with an ACK; data is ignored.</summary>
    private OptionOutcome HandleAbort()
    {
        WriteOptionReply(NbdOptionReplyType.Ack, []);
        return OptionOutcome.ClientAborted;
    }

    /// <summary>proto.md NBD_OPT_LIST: one NBD_REP_SERVER per export, then an ACK.</summary>
    private OptionOutcome HandleList(ReadOnlySpan<byte> data)
    {
        if (!data.IsEmpty)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "NBD_OPT_LIST takes no data");
        }

        foreach (var export in _catalog.List())
        {
            // NBD_REP_SERVER: 32 bits name length, name, then a human-readable description.
            var nameBytes = Encoding.UTF8.GetByteCount(export.Name);
            var descriptionBytes = Encoding.UTF8.GetByteCount(export.Description);
            var payload = 4 + nameBytes + descriptionBytes;
            var span = BeginReply(NbdOptionReplyHeader.SizeBytes + payload);
            new NbdOptionReplyHeader(_option.Option, NbdOptionReplyType.Server, (uint)payload).WriteTo(span);
            var body = span[NbdOptionReplyHeader.SizeBytes..];
            BinaryPrimitives.WriteUInt32BigEndian(body, (uint)nameBytes);
            Encoding.UTF8.GetBytes(export.Name, body[4..]);
            Encoding.UTF8.GetBytes(export.Description, body[(4 + nameBytes)..]);
            EndReply(NbdOptionReplyHeader.SizeBytes + payload);
        }

        WriteOptionReply(NbdOptionReplyType.Ack, []);
        return OptionOutcome.Continue;
    }

    /// <summary>
    /// proto.md NBD_OPT_STARTTLS: without a TLS hook the option is unsupported (NOTLS mode); a second
    /// STARTTLS after TLS is up is invalid.
    /// </summary>
    private OptionOutcome HandleStartTls(ReadOnlySpan<byte> data)
    {
        if (_options.StartTls is null)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorUnsupported, "TLS is not configured on this server");
        }

        if (!data.IsEmpty)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "NBD_OPT_STARTTLS takes no data");
        }

        if (_tlsActive)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "TLS is already active");
        }

        WriteOptionReply(NbdOptionReplyType.Ack, []);
        return OptionOutcome.StartTls;
    }

    /// <summary>
    /// proto.md NBD_OPT_INFO / NBD_OPT_GO. Data: 32 bits name length (at most data length - 6), name,
    /// 16 bits count, count x 16 bits information requests. Replies: NBD_REP_INFO items, then ACK.
    /// </summary>
    private OptionOutcome HandleInfoOrGo(ReadOnlySpan<byte> data)
    {
        if (data.Length < 6)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "option data shorter than 6 bytes");
        }

        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > (uint)(data.Length - 6))
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "export name length exceeds the option data");
        }

        var name = data.Slice(4, (int)nameLength);
        var rest = data[(4 + (int)nameLength)..];
        var requestCount = BinaryPrimitives.ReadUInt16BigEndian(rest);
        var requests = rest[2..];
        if (requests.Length != requestCount * 2)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "information request count does not match the option length");
        }

        if (!TryDecodeString(name, out var exportName))
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "export name is not a valid NBD string");
        }

        if (!_catalog.TryGet(exportName, out var export))
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorUnknown, "no such export");
        }

        if (export.TlsRequired && !_tlsActive)
        {
            // proto.md "TLS support": NBD_REP_ERR_TLS_REQD for an export that needs TLS.
            return ReplyOptionError(NbdOptionReplyType.ErrorTlsRequired, "this export requires TLS: negotiate NBD_OPT_STARTTLS first");
        }

        var wantsName = false;
        var wantsDescription = false;
        for (var i = 0; i < requestCount; i++)
        {
            // The server MUST ignore information requests it does not understand.
            switch ((NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(requests[(i * 2)..]))
            {
                case NbdInfoType.Name:
                    wantsName = true;
                    break;
                case NbdInfoType.Description:
                    wantsDescription = true;
                    break;
                default:
                    break;
            }
        }

        var flags = TransmissionFlagsFor(export);
        WriteInfoExport(export.Device.SizeBytes, flags);
        if (wantsName)
        {
            WriteInfoString(NbdInfoType.Name, export.Name);
        }

        if (wantsDescription && export.Description.Length > 0)
        {
            WriteInfoString(NbdInfoType.Description, export.Description);
        }

        // Sent whether or not it was requested (proto.md lets the server volunteer information):
        // our minimum block is the device's logical block, not the default of 1 byte.
        WriteInfoBlockSize(export.Device);
        WriteOptionReply(NbdOptionReplyType.Ack, []);
        if (_option.Option == NbdOptionType.Go)
        {
            EnterTransmission(export, flags);
            return OptionOutcome.EnterTransmission;
        }

        return OptionOutcome.Continue;
    }

    /// <summary>proto.md NBD_OPT_STRUCTURED_REPLY: no data; ACK enables structured replies.</summary>
    private OptionOutcome HandleStructuredReply(ReadOnlySpan<byte> data)
    {
        if (!data.IsEmpty)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data");
        }

        _structuredReplies = true;
        WriteOptionReply(NbdOptionReplyType.Ack, []);
        return OptionOutcome.Continue;
    }

    /// <summary>
    /// proto.md NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT. Data: 32 bits name length, name,
    /// 32 bits query count, queries (32 bits length, string). We know one context, base:allocation.
    /// </summary>
    private OptionOutcome HandleMetaContext(ReadOnlySpan<byte> data)
    {
        var isSet = _option.Option == NbdOptionType.SetMetaContext;
        if (isSet)
        {
            // "Issuing this command replaces all previously-set metadata contexts (including when
            // this command fails)".
            _metaContextExport = null;
            _allocationContextSelected = false;
            _changedRanges = null;
            _changedContextName = null;
        }

        if (!_structuredReplies)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "negotiate NBD_OPT_STRUCTURED_REPLY first");
        }

        if (!TryReadLengthPrefixed(ref data, out var name) || data.Length < 4)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "malformed export name");
        }

        var queryCount = BinaryPrimitives.ReadUInt32BigEndian(data);
        data = data[4..];
        if (queryCount > (uint)_options.MaxMetaContextQueries)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorTooBig, "too many metadata context queries");
        }

        var matchesAllocation = !isSet && queryCount == 0;
        var listAllChanged = !isSet && queryCount == 0;
        string? changedQuery = null;
        for (var i = 0; i < queryCount; i++)
        {
            if (!TryReadLengthPrefixed(ref data, out var query))
            {
                return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "metadata context query exceeds the option data");
            }

            // "base:" is a wildcard for LIST and ignored by SET; unknown namespaces and leaf names
            // MUST be ignored.
            matchesAllocation |= query.SequenceEqual(AllocationContextName)
                || (!isSet && query.SequenceEqual(BaseNamespaceWildcard));
            listAllChanged |= !isSet && query.SequenceEqual(TidemarkNamespaceWildcard);
            if (TryDecodeString(query, out var text) && text.StartsWith(ChangedContextPrefix, StringComparison.Ordinal) && text.Length > ChangedContextPrefix.Length)
            {
                changedQuery = text; // one changed-blocks context at a time; the last asked wins
            }
        }

        if (!data.IsEmpty)
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "trailing bytes after the metadata context queries");
        }

        if (!TryDecodeString(name, out var exportName))
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorInvalid, "export name is not a valid NBD string");
        }

        if (!_catalog.TryGet(exportName, out var export))
        {
            return ReplyOptionError(NbdOptionReplyType.ErrorUnknown, "no such export");
        }

        if (matchesAllocation)
        {
            // The context ID in LIST replies is reserved and SHOULD be zero.
            WriteMetaContextReply(isSet ? AllocationContextId : 0, AllocationContextName);
        }

        IReadOnlyList<(long OffsetBytes, long LengthBytes)>? changed = null;
        if (export.ChangedBlocks is { } tracker)
        {
            if (listAllChanged)
            {
                foreach (var baseName in tracker.Bases.Take(_options.MaxMetaContextQueries))
                {
                    WriteMetaContextReply(0, Encoding.UTF8.GetBytes(ChangedContextPrefix + baseName));
                }
            }
            else if (changedQuery is not null && Encoding.UTF8.GetByteCount(changedQuery) <= NbdExport.MaxStringBytes)
            {
                try
                {
                    changed = tracker.ChangesSince(changedQuery[ChangedContextPrefix.Length..]);
                }
                catch (StorageException)
                {
                    changed = null; // an unknown or unusable base is an unknown context: ignored
                }

                if (changed is not null)
                {
                    WriteMetaContextReply(isSet ? ChangedContextId : 0, Encoding.UTF8.GetBytes(changedQuery));
                }
            }
        }

        if (isSet)
        {
            _metaContextExport = export;
            _allocationContextSelected = matchesAllocation;
            _changedRanges = changed;
            _changedContextName = changed is null ? null : changedQuery;
        }

        WriteOptionReply(NbdOptionReplyType.Ack, []);
        return OptionOutcome.Continue;
    }

    private void WriteMetaContextReply(uint id, ReadOnlySpan<byte> name)
    {
        var payload = 4 + name.Length;
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + payload);
        new NbdOptionReplyHeader(_option.Option, NbdOptionReplyType.MetaContext, (uint)payload).WriteTo(span);
        BinaryPrimitives.WriteUInt32BigEndian(span[NbdOptionReplyHeader.SizeBytes..], id);
        name.CopyTo(span[(NbdOptionReplyHeader.SizeBytes + 4)..]);
        EndReply(NbdOptionReplyHeader.SizeBytes + payload);
    }

    private NbdTransmissionFlags TransmissionFlagsFor(NbdExport export)
    {
        // proto.md "Transmission flags". CAN_MULTI_CONN: IBlockDevice.Flush is device-wide and every
        // connection shares the device, so a flush on one is visible on all.
        var flags = NbdTransmissionFlags.HasFlags
            | NbdTransmissionFlags.SendFlush
            | NbdTransmissionFlags.CanMultiConn
            | NbdTransmissionFlags.SendCache;
        if (export.IsReadOnly)
        {
            flags |= NbdTransmissionFlags.ReadOnly;
        }
        else
        {
            // Thin devices unmap to zero cheaply, so fast zero requests without NO_HOLE succeed.
            flags |= NbdTransmissionFlags.SendFua
                | NbdTransmissionFlags.SendTrim
                | NbdTransmissionFlags.SendWriteZeroes
                | NbdTransmissionFlags.SendFastZero;
        }

        if (_structuredReplies)
        {
            // We always answer a read with exactly one content chunk, so "don't fragment" holds;
            // SEND_DF MUST stay clear without structured replies.
            flags |= NbdTransmissionFlags.SendDf;
        }

        return flags;
    }

    private void EnterTransmission(NbdExport export, NbdTransmissionFlags flags)
    {
        _export = export;
        _device = export.Device;
        _transmissionFlags = flags;

        // A client MUST only send NBD_CMD_BLOCK_STATUS if the last SET_META_CONTEXT named the same
        // export and selected a context; anything else gets EINVAL.
        _blockStatusEnabled = _structuredReplies && (_allocationContextSelected || _changedRanges is not null) && ReferenceEquals(_metaContextExport, export);
    }

    private OptionOutcome ReplyOptionError(NbdOptionReplyType error, string message)
    {
        // proto.md "Option reply types": error replies MAY carry a message for the user.
        var messageBytes = Encoding.UTF8.GetByteCount(message);
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + messageBytes);
        new NbdOptionReplyHeader(_option.Option, error, (uint)messageBytes).WriteTo(span);
        Encoding.UTF8.GetBytes(message, span[NbdOptionReplyHeader.SizeBytes..]);
        EndReply(NbdOptionReplyHeader.SizeBytes + messageBytes);
        return OptionOutcome.Continue;
    }

    private void WriteOptionReply(NbdOptionReplyType type, ReadOnlySpan<byte> data)
    {
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + data.Length);
        new NbdOptionReplyHeader(_option.Option, type, (uint)data.Length).WriteTo(span);
        data.CopyTo(span[NbdOptionReplyHeader.SizeBytes..]);
        EndReply(NbdOptionReplyHeader.SizeBytes + data.Length);
    }

    /// <summary>NBD_INFO_EXPORT: length 12 = 16 bits type, 64 bits size, 16 bits transmission flags.</summary>
    private void WriteInfoExport(long sizeBytes, NbdTransmissionFlags flags)
    {
        const int payload = 12;
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + payload);
        new NbdOptionReplyHeader(_option.Option, NbdOptionReplyType.Info, payload).WriteTo(span);
        var body = span[NbdOptionReplyHeader.SizeBytes..];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)NbdInfoType.Export);
        BinaryPrimitives.WriteUInt64BigEndian(body[2..], (ulong)sizeBytes);
        BinaryPrimitives.WriteUInt16BigEndian(body[10..], (ushort)flags);
        EndReply(NbdOptionReplyHeader.SizeBytes + payload);
    }

    /// <summary>NBD_INFO_NAME / NBD_INFO_DESCRIPTION: 16 bits type, then the string.</summary>
    private void WriteInfoString(NbdInfoType type, string value)
    {
        var payload = 2 + Encoding.UTF8.GetByteCount(value);
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + payload);
        new NbdOptionReplyHeader(_option.Option, NbdOptionReplyType.Info, (uint)payload).WriteTo(span);
        var body = span[NbdOptionReplyHeader.SizeBytes..];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)type);
        Encoding.UTF8.GetBytes(value, body[2..]);
        EndReply(NbdOptionReplyHeader.SizeBytes + payload);
    }

    /// <summary>
    /// NBD_INFO_BLOCK_SIZE: length 14 = type, minimum, preferred, maximum payload. proto.md "Size
    /// constraints": minimum a power of two up to 64 KiB (the logical block); preferred at least 512
    /// and the minimum (the allocation unit, below which writes read-modify-write a unit).
    /// </summary>
    private void WriteInfoBlockSize(IBlockDevice device)
    {
        const int payload = 14;
        var minimum = (uint)device.LogicalBlockSizeBytes;
        var preferred = Math.Max(minimum, (uint)Math.Max(512, device.AllocationUnitBytes));
        var maximum = Math.Max(preferred, (uint)_options.MaxPayloadBytes);
        var span = BeginReply(NbdOptionReplyHeader.SizeBytes + payload);
        new NbdOptionReplyHeader(_option.Option, NbdOptionReplyType.Info, payload).WriteTo(span);
        var body = span[NbdOptionReplyHeader.SizeBytes..];
        BinaryPrimitives.WriteUInt16BigEndian(body, (ushort)NbdInfoType.BlockSize);
        BinaryPrimitives.WriteUInt32BigEndian(body[2..], minimum);
        BinaryPrimitives.WriteUInt32BigEndian(body[6..], preferred);
        BinaryPrimitives.WriteUInt32BigEndian(body[10..], maximum);
        EndReply(NbdOptionReplyHeader.SizeBytes + payload);
    }

    /// <summary>Reads a 32-bit length and that many bytes; false when they exceed the data.</summary>
    private static bool TryReadLengthPrefixed(ref ReadOnlySpan<byte> data, out ReadOnlySpan<byte> value)
    {
        value = default;
        if (data.Length < 4)
        {
            return false;
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (length > (uint)(data.Length - 4))
        {
            return false;
        }

        value = data.Slice(4, (int)length);
        data = data[(4 + (int)length)..];
        return true;
    }

    /// <summary>proto.md "Conventions": strings are UTF-8, without NUL, at most 4096 bytes.</summary>
    private static bool TryDecodeString(ReadOnlySpan<byte> bytes, out string value)
    {
        if (bytes.Length > NbdExport.MaxStringBytes || bytes.Contains((byte)0) || !Utf8.IsValid(bytes))
        {
            value = string.Empty;
            return false;
        }

        value = Encoding.UTF8.GetString(bytes);
        return true;
    }
}
