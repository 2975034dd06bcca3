using System.Buffers;
using System.Buffers.Binary;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// proto.md "Newstyle negotiation" and "Fixed newstyle negotiation": greeting, client flags, and the
// loop that reads one option at a time (the client MUST wait for the final reply before the next).
public sealed partial class NbdConnection
{
    private const int GreetingSizeBytes = 18;
    private const int ClientFlagsSizeBytes = 4;
    private const NbdHandshakeFlags ServerHandshakeFlags = NbdHandshakeFlags.FixedNewstyle | NbdHandshakeFlags.NoZeroes;

    private byte[]? _optionData;
    private NbdOptionHeader _option;
    private int _optionCount;
    private bool _noZeroes;
    private bool _tlsActive;

    private enum ReadStatus
    {
        Complete,
        Closed,
        Truncated,
        Cancelled,
    }

    private enum OptionOutcome
    {
        Continue,
        EnterTransmission,
        ClientAborted,
        UnknownExport,
        StartTls,
    }

    /// <summary>Returns the end of the session, or null when transmission begins.</summary>
    private async ValueTask<NbdSessionEnd?> NegotiateAsync(CancellationToken cancellationToken)
    {
        WriteGreeting();
        if (!await FlushAsync(cancellationToken))
        {
            return StoppedSendingEnd();
        }

        var status = await ReadClientFlagsAsync(cancellationToken);
        if (status != ReadStatus.Complete)
        {
            return EndFor(status);
        }

        while (true)
        {
            status = await ReadOptionAsync(cancellationToken);
            if (status != ReadStatus.Complete)
            {
                return EndFor(status);
            }

            if (++_optionCount > _options.MaxOptionsPerConnection)
            {
                NbdProtocolViolationException.Throw($"more than {_options.MaxOptionsPerConnection} options in one handshake");
            }

            var outcome = HandleOption(_optionData.AsSpan(0, (int)_option.DataLengthBytes));
            if (!await FlushAsync(cancellationToken))
            {
                return StoppedSendingEnd();
            }

            switch (outcome)
            {
                case OptionOutcome.EnterTransmission:
                    if (_optionData is { } optionData)
                    {
                        // The handshake buffer is not needed in transmission; give it back early.
                        _optionData = null;
                        ArrayPool<byte>.Shared.Return(optionData);
                    }

                    return null;
                case OptionOutcome.ClientAborted:
                    return new NbdSessionEnd(NbdSessionEndReason.ClientAborted);
                case OptionOutcome.UnknownExport:
                    return new NbdSessionEnd(NbdSessionEndReason.UnknownExport, "NBD_OPT_EXPORT_NAME named an unknown export");
                case OptionOutcome.StartTls:
                    await UpgradeToTlsAsync(cancellationToken);
                    break;
                default:
                    break;
            }
        }
    }

    private NbdSessionEnd EndFor(ReadStatus status) => status switch
    {
        ReadStatus.Cancelled => AbortedEnd(),
        ReadStatus.Truncated => new NbdSessionEnd(NbdSessionEndReason.TruncatedFrame, "the peer closed in the middle of a handshake message"),
        _ => new NbdSessionEnd(NbdSessionEndReason.PeerClosed),
    };

    private void WriteGreeting()
    {
        // S: NBDMAGIC, IHAVEOPT, 16 bits handshake flags.
        var span = BeginReply(GreetingSizeBytes);
        BinaryPrimitives.WriteUInt64BigEndian(span, NbdMagic.InitPassword);
        BinaryPrimitives.WriteUInt64BigEndian(span[8..], NbdMagic.IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(span[16..], (ushort)ServerHandshakeFlags);
        EndReply(GreetingSizeBytes);
    }

    private async ValueTask<ReadStatus> ReadClientFlagsAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                return ReadStatus.Cancelled;
            }

            var buffer = result.Buffer;
            if (buffer.Length >= ClientFlagsSizeBytes)
            {
                Span<byte> raw = stackalloc byte[ClientFlagsSizeBytes];
                buffer.Slice(0, ClientFlagsSizeBytes).CopyTo(raw);
                _input.AdvanceTo(buffer.GetPosition(ClientFlagsSizeBytes));
                var flags = (NbdClientFlags)BinaryPrimitives.ReadUInt32BigEndian(raw);

                // proto.md "Client flags": the server MUST drop the connection if the client sets an
                // unknown flag or one the server did not advertise.
                const NbdClientFlags known = NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes;
                if ((flags & ~known) != 0)
                {
                    NbdProtocolViolationException.Throw($"unknown client flags 0x{(uint)flags:x8}");
                }

                // Without NBD_FLAG_C_FIXED_NEWSTYLE the client speaks plain newstyle; proto.md lets a
                // server honour fixed newstyle anyway, and such a client only sends NBD_OPT_EXPORT_NAME.
                _noZeroes = (flags & NbdClientFlags.NoZeroes) != 0;
                return ReadStatus.Complete;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return buffer.IsEmpty ? ReadStatus.Closed : ReadStatus.Truncated;
            }
        }
    }

    /// <summary>Reads one whole option into <see cref="_option"/> and <see cref="_optionData"/>.</summary>
    private async ValueTask<ReadStatus> ReadOptionAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await _input.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                return ReadStatus.Cancelled;
            }

            var buffer = result.Buffer;
            if (TryReadOption(buffer, out var consumed))
            {
                _input.AdvanceTo(consumed);
                return ReadStatus.Complete;
            }

            _input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                return buffer.IsEmpty ? ReadStatus.Closed : ReadStatus.Truncated;
            }
        }
    }

    /// <summary>
    /// Framing for option requests: false until the header and all its data are buffered. The magic
    /// and the length cap are checked as soon as the header is there, before waiting for (or
    /// allocating for) the data.
    /// </summary>
    private bool TryReadOption(in ReadOnlySequence<byte> buffer, out SequencePosition consumed)
    {
        consumed = buffer.Start;
        if (buffer.Length < NbdOptionHeader.SizeBytes)
        {
            return false;
        }

        Span<byte> raw = stackalloc byte[NbdOptionHeader.SizeBytes];
        buffer.Slice(0, NbdOptionHeader.SizeBytes).CopyTo(raw);
        NbdOptionHeader.TryRead(raw, out var header);
        if (header.Magic != NbdMagic.IHaveOpt)
        {
            NbdProtocolViolationException.Throw($"bad option magic 0x{header.Magic:x16}");
        }

        if (header.DataLengthBytes > (uint)_options.MaxOptionDataBytes)
        {
            NbdProtocolViolationException.Throw($"option {(uint)header.Option} carries {header.DataLengthBytes} bytes, more than the {_options.MaxOptionDataBytes}-byte cap");
        }

        var dataLength = (int)header.DataLengthBytes;
        if (buffer.Length - NbdOptionHeader.SizeBytes < dataLength)
        {
            return false;
        }

        if (_optionData is null || _optionData.Length < dataLength)
        {
            if (_optionData is { } old)
            {
                ArrayPool<byte>.Shared.Return(old);
            }

            _optionData = ArrayPool<byte>.Shared.Rent(Math.Max(dataLength, 1024));
        }

        buffer.Slice(NbdOptionHeader.SizeBytes, dataLength).CopyTo(_optionData);
        _option = header;
        consumed = buffer.GetPosition(NbdOptionHeader.SizeBytes + dataLength);
        return true;
    }

    /// <summary>
    /// proto.md NBD_OPT_STARTTLS: after the ACK the connection is upgraded and all negotiation state
    /// from before is forgotten. The host's hook wraps the transport (for example in an SslStream).
    /// </summary>
    private async ValueTask UpgradeToTlsAsync(CancellationToken cancellationToken)
    {
        var upgrade = _options.StartTls ?? throw new InvalidOperationException("STARTTLS acknowledged without a TLS hook");
        var upgraded = await upgrade(_transport, cancellationToken);
        _transport = upgraded;
        _input = upgraded.Input;
        _output = upgraded.Output;
        _tlsActive = true;
        _payload = new PipePayload(_input); // the socket now carries ciphertext
        _structuredReplies = false;
        _metaContextExport = null;
        _allocationContextSelected = false;
        _changedRanges = null;
        _changedContextName = null;
    }
}
