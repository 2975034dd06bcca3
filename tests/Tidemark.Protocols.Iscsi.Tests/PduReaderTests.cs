using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class PduReaderTests
{
    private static readonly FramingSettings _plain = new(false, false, 8192, 512);
    private static readonly FramingSettings _digests = new(true, true, 8192, 512);

    private static byte[] Frame(bool digests, int dataLength)
    {
        var bhs = new byte[48];
        new NopOutPdu(true, dataLength, 0, 1, 0xFFFFFFFF, 1, 0).WriteTo(bhs);
        var writer = new ArrayBufferWriter<byte>();
        PduWriter.Write(writer, digests, digests, bhs, Enumerable.Range(0, dataLength).Select(i => (byte)i).ToArray());
        return writer.WrittenSpan.ToArray();
    }

    [Theory]
    [InlineData(false, 0)]
    [InlineData(false, 5)]
    [InlineData(true, 5)]
    [InlineData(true, 0)]
    public void TryReadPdu_EveryPrefix_ReturnsFalseUntilWhole(bool digests, int dataLength)
    {
        var bytes = Frame(digests, dataLength);
        var settings = digests ? _digests : _plain;
        var scratch = new byte[48];
        for (var n = 0; n < bytes.Length; n++)
        {
            Assert.False(PduReader.TryReadPdu(new ReadOnlySequence<byte>(bytes, 0, n), settings, scratch, out _, out _));
        }

        Assert.True(PduReader.TryReadPdu(new ReadOnlySequence<byte>(bytes), settings, scratch, out var pdu, out var consumed));
        Assert.Equal(dataLength, (int)pdu.Data.Length);
        Assert.True(pdu.DataDigestValid);
        Assert.Equal(bytes.Length, new ReadOnlySequence<byte>(bytes).Slice(0, consumed).Length);
    }

    [Fact]
    public void TryReadPdu_DataSegmentOverCap_ThrowsProtocolViolation()
    {
        var bhs = new byte[48];
        new NopOutPdu(true, 9000, 0, 1, 0xFFFFFFFF, 1, 0).WriteTo(bhs);

        // Only the header is present: the cap is enforced before the data is buffered.
        var e = Assert.Throws<IscsiProtocolException>(() => PduReader.TryReadPdu(new ReadOnlySequence<byte>(bhs), _plain, new byte[48], out _, out _));
        Assert.Equal(RejectReason.ProtocolError, e.Reason);
    }

    [Fact]
    public void TryReadPdu_AhsOverCap_ThrowsProtocolViolation()
    {
        var bhs = new byte[48];
        bhs[4] = 255;
        Assert.Throws<IscsiProtocolException>(() => PduReader.TryReadPdu(new ReadOnlySequence<byte>(bhs), _plain, new byte[48], out _, out _));
    }

    [Fact]
    public void TryReadPdu_CorruptHeaderDigest_ThrowsProtocolViolation()
    {
        var bytes = Frame(true, 4);
        bytes[49] ^= 0xFF;
        Assert.Throws<IscsiProtocolException>(() => PduReader.TryReadPdu(new ReadOnlySequence<byte>(bytes), _digests, new byte[48], out _, out _));
    }

    [Fact]
    public void TryReadPdu_CorruptData_FlagsDataDigestInvalid()
    {
        var bytes = Frame(true, 4);
        bytes[52] ^= 0xFF;
        Assert.True(PduReader.TryReadPdu(new ReadOnlySequence<byte>(bytes), _digests, new byte[48], out var pdu, out _));
        Assert.False(pdu.DataDigestValid);
    }

    [Fact]
    public void TryReadPdu_PaddedSegmentSplitAcrossSegments_ConsumesPadding()
    {
        var one = Frame(false, 5);
        var two = one.Concat(one).ToArray();
        var sequence = MultiSegment.Create(two, 7, 50, 60);

        Assert.True(PduReader.TryReadPdu(sequence, _plain, new byte[48], out var pdu, out var consumed));
        Assert.Equal([0, 1, 2, 3, 4], pdu.Data.ToArray());
        Assert.Equal(one.Length, sequence.Slice(0, consumed).Length);
    }
}

/// <summary>Builds a ReadOnlySequence split at the given offsets, to exercise segment boundaries.</summary>
internal sealed class MultiSegment : ReadOnlySequenceSegment<byte>
{
    private MultiSegment(ReadOnlyMemory<byte> memory, long runningIndex)
    {
        Memory = memory;
        RunningIndex = runningIndex;
    }

    public static ReadOnlySequence<byte> Create(byte[] data, params int[] cuts)
    {
        var bounds = cuts.Where(c => c > 0 && c < data.Length).Order().Append(data.Length).ToArray();
        var first = new MultiSegment(data.AsMemory(0, bounds[0]), 0);
        var last = first;
        for (var i = 1; i < bounds.Length; i++)
        {
            var next = new MultiSegment(data.AsMemory(bounds[i - 1], bounds[i] - bounds[i - 1]), bounds[i - 1]);
            last.Next = next;
            last = next;
        }

        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }
}
