using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// One framed PDU: the BHS (copied into the caller's 48-byte scratch), and slices of the receive
/// buffer for the AHS and the unpadded data segment. The slices are valid only until the reader
/// advances past them.
/// </summary>
public readonly ref struct IscsiPdu
{
    private readonly ReadOnlySpan<byte> _header;

    internal IscsiPdu(ReadOnlySpan<byte> header, ReadOnlySequence<byte> additionalHeader, ReadOnlySequence<byte> data, bool dataDigestValid)
    {
        _header = header;
        AdditionalHeader = additionalHeader;
        Data = data;
        DataDigestValid = dataDigestValid;
    }

    /// <summary>A PDU whose data segment is still in the connection, as <paramref name="dataSource"/> (IscsiConnection.Payload.cs).</summary>
    internal IscsiPdu(ReadOnlySpan<byte> header, IPayloadSource dataSource)
    {
        _header = header;
        DataSource = dataSource;
        DataDigestValid = true;
    }

    public ReadOnlySpan<byte> Header => _header;

    public ReadOnlySequence<byte> AdditionalHeader { get; }

    public ReadOnlySequence<byte> Data { get; }

    /// <summary>
    /// The data segment as a source a device pulls, when it was left in the connection (then
    /// <see cref="Data"/> is empty): a handler writes it from there or fills it where it goes, and the
    /// receive loop drops whatever the handler left.
    /// </summary>
    internal IPayloadSource? DataSource { get; }

    /// <summary>Length of the data segment, wherever it is (read it before anything takes from the source).</summary>
    internal int DataLengthBytes => DataSource?.RemainingBytes ?? (int)Data.Length;

    /// <summary>False when DataDigest=CRC32C was negotiated and the received digest did not match (RFC 7143 7.8).</summary>
    public bool DataDigestValid { get; }

    public IscsiOpcode Opcode => (IscsiOpcode)(_header[0] & 0x3F);

    public bool Immediate => (_header[0] & 0x40) != 0;

    public uint InitiatorTaskTag => BasicHeaderSegment.U32(_header, 16);
}

/// <summary>How the reader frames PDUs on one connection: digests and the negotiated data-segment cap.</summary>
public readonly record struct FramingSettings(bool HeaderDigest, bool DataDigest, int MaxDataSegmentBytes, int MaxAhsBytes);
