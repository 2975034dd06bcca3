using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Issue 18: a WRITE larger than IscsiLimits.WritePieceBytes is written to the unit piece by piece as
/// its Data-Out arrives (it holds one piece, not its data), with the whole command's checks made
/// before its first piece; and large data segments are taken through the payload feature instead of
/// waiting whole in the input pipe.
/// </summary>
public sealed class WritePiecesTests
{
    private const int PieceBytes = 256 * 1024;

    private static readonly IscsiLimits Limits = new() { WritePieceBytes = PieceBytes, ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };

    private static byte[] Write16(ulong lba, uint blocks, byte flags = 0) => PiecesSession.Cdb16(ScsiOpcode.Write16, lba, blocks, flags);

    private static byte[] Pattern(int length) => PiecesSession.Pattern(length);

    private static Task<TestInitiator> LoginAsync(IscsiTargetCatalog catalog, params (string Key, string Value)[] keys) =>
        PiecesSession.LoginAsync(catalog, Limits, null, [("InitialR2T", "Yes"), ("ImmediateData", "No"), .. keys]);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task FourMiBWrite_HoldsOnePiece_AndLandsWhole(bool fua)
    {
        await using var initiator = await LoginAsync(Catalogs.Create(out var device), ("MaxBurstLength", "1048576"));
        var data = Pattern(4 << 20);
        var reply = await initiator.CommandAsync(Write16(2048, (uint)(data.Length / 512), fua ? (byte)0x08 : (byte)0), (uint)data.Length, read: false, write: true, itt: 0x40);
        var held = initiator.Connection.BufferedWriteBytes;

        var (status, _) = await AnswerR2TsAsync(initiator, reply, data, segmentBytes: 64 * 1024);

        Assert.Equal((byte)ScsiStatus.Good, status.Status);
        Assert.Equal(0x40u, status.InitiatorTaskTag);
        Assert.InRange(held, 1, PieceBytes); // the buffered path held all 4 MiB
        Assert.Equal(0, initiator.Connection.BufferedWriteBytes);
        var stored = new byte[data.Length];
        device.Read(2048 * 512, stored);
        Assert.Equal(data, stored);
    }

    [Fact]
    public async Task WritePastTheEnd_IsRefusedWithLbaOutOfRange_AndWritesNothing()
    {
        await using var initiator = await LoginAsync(Catalogs.Create(out var device));
        var data = Pattern(1 << 20);

        // 16 MiB device: the first 512 KiB are in range, the rest is not; a piece-by-piece write
        // without the whole command's check would write the first piece.
        var lba = (ulong)(((16 << 20) - (512 << 10)) / 512);
        var reply = await initiator.CommandAsync(Write16(lba, (uint)(data.Length / 512)), (uint)data.Length, read: false, write: true, itt: 0x41);
        var (status, response) = await AnswerR2TsAsync(initiator, reply, data, segmentBytes: 128 * 1024);

        Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
        Assert.True(SenseData.TryRead(response.AsSpan(2), out var sense));
        Assert.Equal(SenseData.LbaOutOfRange, sense);
        var stored = new byte[512 << 10];
        device.Read((long)lba * 512, stored);
        Assert.All(stored, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task DataOutOutOfOrder_InAWriteInPieces_IsRejected()
    {
        await using var initiator = await LoginAsync(Catalogs.Create(out _));
        var reply = await initiator.CommandAsync(Write16(0, 2048), 1 << 20, read: false, write: true, itt: 0x42);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));

        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new DataOutPdu(false, 4096, 0, 0x42, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 8192).WriteTo(bhs);
        await initiator.SendAsync(bhs, new byte[4096]);

        (byte[] Header, byte[] Data)? pdu;
        do
        {
            pdu = await initiator.ReceiveAsync();
        }
        while (pdu is { } other && ReadyToTransferPdu.TryRead(other.Header, out _));

        Assert.NotNull(pdu);
        Assert.True(RejectPdu.TryRead(pdu.Value.Header, out var reject));
        Assert.Equal(RejectReason.ProtocolError, reject.Reason);
        await initiator.Running;
        Assert.Contains("in order", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task LargeDataOut_SentInSmallFlushes_IsTakenThroughThePayload_NotBufferedWholeInTheInput(bool dataDigest)
    {
        // The test pipe pauses its writer at 64 KiB that the target has not consumed: a target that
        // waited for the whole 256 KiB PDU in its input would never see the end of it (the writer
        // would wait forever). Taking the data segment through the payload feature consumes it as it comes.
        await using var initiator = await LoginAsync(Catalogs.Create(out var device), ("DataDigest", dataDigest ? "CRC32C" : "None"));
        var data = Pattern(256 << 10);
        var reply = await initiator.CommandAsync(Write16(64, (uint)(data.Length / 512)), (uint)data.Length, read: false, write: true, itt: 0x43);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));

        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new DataOutPdu(true, data.Length, 0, 0x43, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
        var wire = new ArrayBufferWriter<byte>();
        PduWriter.Write(wire, false, dataDigest, bhs, data);
        var bytes = wire.WrittenMemory;
        for (var at = 0; at < bytes.Length; at += 32 * 1024)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await initiator.Output.WriteAsync(bytes.Slice(at, Math.Min(32 * 1024, bytes.Length - at)), timeout.Token);
        }

        var response = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(response.Header, out var status));
        Assert.Equal(0, status.Status);
        var stored = new byte[data.Length];
        device.Read(64 * 512, stored);
        Assert.Equal(data, stored);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(4096)]
    public async Task OneMiBWrite_BufferedWhole_ItsDataOutReceivedInPlace_LandsWhole(int firstSegmentOffset)
    {
        // A command up to WritePieceBytes is buffered whole; its large Data-Out segments (not all in the
        // input, the test pipe stops its writer at 64 KiB) are received straight into the command's
        // buffer at their offsets (IscsiConnection.Payload.cs), not into a piece copied there after.
        // A first segment of 4 KiB puts every later one at an offset that is not a multiple of its size.
        var limits = new IscsiLimits { WritePieceBytes = 1 << 20, ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };
        await using var initiator = await PiecesSession.LoginAsync(Catalogs.Create(out var device), limits, null, [("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxBurstLength", "1048576")]);
        var data = Pattern(1 << 20);
        var reply = await initiator.CommandAsync(Write16(512, (uint)(data.Length / 512)), (uint)data.Length, read: false, write: true, itt: 0x44);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));
        Assert.Equal((uint)data.Length, r2t.DesiredDataTransferLengthBytes);

        uint dataSn = 0;
        var offset = 0;
        while (offset < data.Length)
        {
            var length = offset == 0 && firstSegmentOffset > 0 ? firstSegmentOffset : Math.Min(256 * 1024, data.Length - offset);
            var bhs = new byte[BasicHeaderSegment.LengthBytes];
            new DataOutPdu(offset + length == data.Length, length, 0, 0x44, r2t.TargetTransferTag, initiator.ExpStatSN, dataSn++, (uint)offset).WriteTo(bhs);
            var wire = new ArrayBufferWriter<byte>();
            PduWriter.Write(wire, false, false, bhs, data.AsSpan(offset, length));
            var bytes = wire.WrittenMemory;
            for (var at = 0; at < bytes.Length; at += 32 * 1024)
            {
                // In flushes of 32 KiB, as a socket delivers them: the target sees the header before the data is all there.
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await initiator.Output.WriteAsync(bytes.Slice(at, Math.Min(32 * 1024, bytes.Length - at)), timeout.Token);
            }

            offset += length;
        }

        var response = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(response.Header, out var status));
        Assert.Equal(0, status.Status);
        var stored = new byte[data.Length];
        device.Read(512 * 512, stored);
        Assert.Equal(data, stored);

        // Every 256 KiB segment went in place; a 4 KiB one is small enough to come whole with its header.
        Assert.Equal(data.Length - firstSegmentOffset, initiator.Connection.DataReceivedInPlaceBytes);
    }

    /// <summary>Sends the data each R2T asks for, in segments, until the SCSI Response comes; returns it and its data segment.</summary>
    private static async Task<(ScsiResponsePdu Status, byte[] Data)> AnswerR2TsAsync(TestInitiator initiator, (byte[] Header, byte[] Data) first, byte[] data, int segmentBytes)
    {
        var pdu = first;
        while (true)
        {
            if (ScsiResponsePdu.TryRead(pdu.Header, out var status))
            {
                return (status, pdu.Data);
            }

            Assert.True(ReadyToTransferPdu.TryRead(pdu.Header, out var r2t));
            uint dataSn = 0;
            for (var offset = 0; offset < (int)r2t.DesiredDataTransferLengthBytes; offset += segmentBytes)
            {
                var length = Math.Min(segmentBytes, (int)r2t.DesiredDataTransferLengthBytes - offset);
                var at = (int)r2t.BufferOffset + offset;
                var bhs = new byte[BasicHeaderSegment.LengthBytes];
                new DataOutPdu(offset + length == (int)r2t.DesiredDataTransferLengthBytes, length, 0, r2t.InitiatorTaskTag, r2t.TargetTransferTag, initiator.ExpStatSN, dataSn++, (uint)at)
                    .WriteTo(bhs);
                await initiator.SendAsync(bhs, data.AsMemory(at, length));
            }

            pdu = await initiator.ReceiveAsync() ?? throw new InvalidOperationException("the target closed the connection");
        }
    }
}
