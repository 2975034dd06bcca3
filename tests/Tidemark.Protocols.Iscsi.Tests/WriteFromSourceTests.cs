using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Issue 18: on a transport that offers payload sources, a large WRITE's data segments (immediate
/// data and Data-Out) are not received into memory: each is a WRITE (16) of its own blocks whose data
/// the device pulls from the source (IscsiConnection.WritePieces.cs). Here the transport is an
/// in-memory one that offers sources (<see cref="SourcePayload"/>); Tidemark.Server.Tests drive the
/// socket's, which splices.
/// </summary>
public sealed class WriteFromSourceTests
{
    private const int Kib = 1024;
    private const int Mib = 1 << 20;

    private static readonly IscsiLimits Limits = new() { ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };

    private static readonly (string Key, string Value)[] Keys =
        [("ImmediateData", "Yes"), ("InitialR2T", "Yes"), ("FirstBurstLength", "262144"), ("MaxBurstLength", "1048576")];

    public enum SourceKind
    {
        /// <summary>The transport stages whole segments.</summary>
        Whole,

        /// <summary>The transport stages less than a segment (a small pipe): the segment goes through memory.</summary>
        Partial,

        /// <summary>The transport offers sources but has none to give (no pipe): memory.</summary>
        None,
    }

    [Theory]
    [InlineData(1 * Mib, SourceKind.Whole)]
    [InlineData(4 * Mib, SourceKind.Whole)]
    [InlineData(1 * Mib, SourceKind.Partial)]
    [InlineData(1 * Mib, SourceKind.None)]
    public async Task LargeWrite_WithASource_LandsWholeAtItsOffset_AndSmallWritesKeepTheirPath(int length, SourceKind kind)
    {
        var catalog = Catalogs.Create(out var device);
        await using var initiator = await LoginAsync(catalog, kind);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(length, 7);

        var (status, _) = await WriteAsync(initiator, 0x60, 1024, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);

        Assert.Equal((byte)ScsiStatus.Good, status.Status);
        Assert.Equal(0u, status.ResidualCount);
        var stored = new byte[length];
        device.Read(1024 * 512, stored);
        Assert.Equal(data, stored);
        Assert.All(ReadBack(device, 0, 1024 * 512), b => Assert.Equal(0, b)); // nothing before it
        Assert.Equal(kind == SourceKind.Whole ? length : 0, initiator.Connection.DataWrittenFromSourceBytes);
        Assert.Equal(0, initiator.Connection.BufferedWriteBytes);

        // A 4 KiB WRITE's data comes whole with its header: no source is opened for it.
        var opened = payload.Opened;
        var small = PiecesSession.Pattern(4096, 8);
        var reply = await initiator.CommandAsync(Write16(8, 8), 4096, read: false, write: true, small, itt: 0x61);
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var smallStatus));
        Assert.Equal((byte)ScsiStatus.Good, smallStatus.Status);
        Assert.Equal(small, ReadBack(device, 8 * 512, 4096));
        Assert.Equal(opened, payload.Opened);
    }

    [Fact]
    public async Task OneMiBWrite_AtTheOfferedSegmentLength_IsTwoSourceWrites_ImmediateDataAndOneDataOut()
    {
        // The target offers MaxRecvDataSegmentLength 1 MiB (IscsiLimits), so the 768 KiB the R2T asks
        // for comes as one Data-Out, and the device pulls it in one piece.
        var catalog = Catalogs.Create(out var device);
        await using var initiator = await LoginAsync(catalog, SourceKind.Whole);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 11);
        var opened = payload.Opened;

        var (status, _) = await WriteAsync(initiator, 0x70, 2048, data, immediateBytes: 256 * Kib, segmentBytes: Mib);

        Assert.Equal((byte)ScsiStatus.Good, status.Status);
        Assert.Equal(data, ReadBack(device, 2048 * 512, Mib));
        Assert.Equal(opened + 2, payload.Opened);
        Assert.Equal(Mib, initiator.Connection.DataWrittenFromSourceBytes);
    }

    [Fact]
    public async Task DataDigest_TakesTheOrdinaryPath_AndLandsWhole()
    {
        var catalog = Catalogs.Create(out var device);
        await using var initiator = await LoginAsync(catalog, SourceKind.Whole, ("DataDigest", "CRC32C"));
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 9);

        var (status, _) = await WriteAsync(initiator, 0x62, 0, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);

        Assert.Equal((byte)ScsiStatus.Good, status.Status);
        Assert.Equal(data, ReadBack(device, 0, Mib));
        Assert.Equal(0, payload.Opened);
        Assert.Equal(0, initiator.Connection.DataWrittenFromSourceBytes);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task WriteRefused_ByAReservationOrWriteProtection_WritesNothing_AndTheConnectionStaysInStep(bool reservation)
    {
        var device = new MemoryBlockDevice(16L << 20);
        var catalog = new IscsiTargetCatalog();
        var target = catalog.AddOrUpdate(new IscsiTargetDefinition(Catalogs.Target, [new IscsiLunDefinition(0, device, ReadOnly: !reservation)]));
        if (reservation)
        {
            // RESERVE (6) by another initiator port (SPC-2 6.15).
            var unit = target.Units[0];
            var sense = new byte[SenseData.FixedFormatLengthBytes];
            Assert.True(unit.Execute(unit.OpenNexus("iqn.2026-11.dev.tidemark:other,i,0x1"), new ScsiCommand([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], [], [], sense)).IsGood);
        }

        await using var initiator = await LoginAsync(catalog, SourceKind.Whole);
        var data = PiecesSession.Pattern(Mib, 10);

        var (status, response) = await WriteAsync(initiator, 0x63, 0, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);

        if (reservation)
        {
            Assert.Equal((byte)ScsiStatus.ReservationConflict, status.Status);
        }
        else
        {
            Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
            Assert.True(SenseData.TryRead(response.AsSpan(2), out var sense));
            Assert.Equal(SenseData.WriteProtected, sense);
        }

        Assert.All(ReadBack(device, 0, Mib), b => Assert.Equal(0, b));
        Assert.Equal(0, initiator.Connection.DataWrittenFromSourceBytes);
        await PingAsync(initiator);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(512 * Kib)]
    public async Task DeviceFailingMidway_AnswersCheckCondition_KeepsWhatWasWritten_AndTheConnectionStaysInStep(long failAt)
    {
        var memory = new MemoryBlockDevice(16L << 20);
        var device = new FailingDevice(memory) { FailAtOffset = failAt };
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Catalogs.Target, [new IscsiLunDefinition(0, device)]));
        await using var initiator = await LoginAsync(catalog, SourceKind.Whole);
        var data = PiecesSession.Pattern(Mib, 11);

        var (status, response) = await WriteAsync(initiator, 0x64, 0, data, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);

        Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
        Assert.True(SenseData.TryRead(response.AsSpan(2), out var sense));
        Assert.Equal(SenseData.WriteError, sense);

        // The segments before the failing one stay written (SBC-3 4.5); nothing after it is.
        Assert.Equal(data.AsSpan(0, (int)failAt).ToArray(), ReadBack(memory, 0, (int)failAt));
        Assert.All(ReadBack(memory, failAt, Mib - (int)failAt), b => Assert.Equal(0, b));

        // In step: the next WRITE (its data behind the failed one's on the wire) lands whole.
        device.FailAtOffset = -1;
        var next = PiecesSession.Pattern(512 * Kib, 12);
        var (nextStatus, _) = await WriteAsync(initiator, 0x65, 4096, next, immediateBytes: 256 * Kib, segmentBytes: 256 * Kib);
        Assert.Equal((byte)ScsiStatus.Good, nextStatus.Status);
        Assert.Equal(next, ReadBack(memory, 4096L * 512, next.Length));
    }

    [Fact]
    public async Task TwoWrites_WithTheirDataOutInterleaved_AndASmallWriteBetween_AllLandWhole()
    {
        var catalog = Catalogs.Create(out var device);
        await using var initiator = await LoginAsync(catalog, SourceKind.Whole);
        var first = PiecesSession.Pattern(Mib, 13);
        var second = PiecesSession.Pattern(Mib, 14);

        var r2tFirst = await StartWriteAsync(initiator, 0x66, 0, first, 256 * Kib);
        var r2tSecond = await StartWriteAsync(initiator, 0x67, 4096, second, 256 * Kib);

        var statuses = new Dictionary<uint, byte>();
        uint dataSn = 0;
        for (var offset = 256 * Kib; offset < Mib; offset += 256 * Kib)
        {
            var final = offset + (256 * Kib) == Mib;
            await SendDataOutAsync(initiator, r2tFirst, first, offset, 256 * Kib, dataSn, final);
            await SendDataOutAsync(initiator, r2tSecond, second, offset, 256 * Kib, dataSn, final);
            dataSn++;
            if (offset == 512 * Kib)
            {
                // A 4 KiB WRITE of another range between the two commands' Data-Out.
                var bhs = new byte[BasicHeaderSegment.LengthBytes];
                new ScsiCommandPdu(false, true, false, true, 1, 4096, 0, 0x68, 4096, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(bhs, Write16(8192, 8));
                await initiator.SendAsync(bhs, PiecesSession.Pattern(4096, 15));
            }
        }

        while (statuses.Count < 3)
        {
            var pdu = await initiator.ReceiveAsync() ?? throw new InvalidOperationException("the target closed the connection");
            Assert.True(ScsiResponsePdu.TryRead(pdu.Header, out var status));
            statuses[status.InitiatorTaskTag] = status.Status;
        }

        Assert.All(statuses.Values, s => Assert.Equal((byte)ScsiStatus.Good, s));
        Assert.Equal(first, ReadBack(device, 0, Mib));
        Assert.Equal(second, ReadBack(device, 4096L * 512, Mib));
        Assert.Equal(PiecesSession.Pattern(4096, 15), ReadBack(device, 8192L * 512, 4096));
        Assert.Equal(2 * Mib, initiator.Connection.DataWrittenFromSourceBytes);
    }

    private static byte[] Write16(ulong lba, uint blocks) => PiecesSession.Cdb16(ScsiOpcode.Write16, lba, blocks);

    private static byte[] ReadBack(IBlockDevice device, long offset, int length)
    {
        var stored = new byte[length];
        device.Read(offset, stored);
        return stored;
    }

    private static async Task<TestInitiator> LoginAsync(IscsiTargetCatalog catalog, SourceKind kind, params (string Key, string Value)[] extra)
    {
        var initiator = new TestInitiator(catalog, Limits, payload: reader => new SourcePayload(reader)
        {
            GivesSources = kind != SourceKind.None,
            MaxSourceBytes = kind == SourceKind.Partial ? 128 * Kib : 0,
        });
        try
        {
            await initiator.LoginAsync(Catalogs.Target, [.. Keys, .. extra]);
        }
        catch
        {
            await initiator.DisposeAsync();
            throw;
        }

        initiator.DataDigest = extra.Any(k => k.Key == "DataDigest" && k.Value == "CRC32C");
        return initiator;
    }

    /// <summary>Sends a WRITE (16) with its immediate data, answers its R2Ts with Data-Out of <paramref name="segmentBytes"/>, and returns its status.</summary>
    private static async Task<(ScsiResponsePdu Status, byte[] Data)> WriteAsync(TestInitiator initiator, uint itt, ulong lba, byte[] data, int immediateBytes, int segmentBytes)
    {
        var pdu = await SendCommandAsync(initiator, itt, lba, data, immediateBytes);
        while (true)
        {
            if (ScsiResponsePdu.TryRead(pdu.Header, out var status))
            {
                return (status, pdu.Data);
            }

            Assert.True(ReadyToTransferPdu.TryRead(pdu.Header, out var r2t));
            uint dataSn = 0;
            var end = (int)(r2t.BufferOffset + r2t.DesiredDataTransferLengthBytes);
            for (var offset = (int)r2t.BufferOffset; offset < end; offset += segmentBytes)
            {
                var length = Math.Min(segmentBytes, end - offset);
                await SendDataOutAsync(initiator, r2t, data, offset, length, dataSn++, offset + length == end);
            }

            pdu = await initiator.ReceiveAsync() ?? throw new InvalidOperationException("the target closed the connection");
        }
    }

    /// <summary>Sends a WRITE (16) with its immediate data and returns its R2T (one for the rest: MaxBurstLength is 1 MiB).</summary>
    private static async Task<ReadyToTransferPdu> StartWriteAsync(TestInitiator initiator, uint itt, ulong lba, byte[] data, int immediateBytes)
    {
        var pdu = await SendCommandAsync(initiator, itt, lba, data, immediateBytes);
        Assert.True(ReadyToTransferPdu.TryRead(pdu.Header, out var r2t));
        Assert.Equal((uint)immediateBytes, r2t.BufferOffset);
        return r2t;
    }

    private static async Task<(byte[] Header, byte[] Data)> SendCommandAsync(TestInitiator initiator, uint itt, ulong lba, byte[] data, int immediateBytes)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, false, true, 1, immediateBytes, 0, itt, (uint)data.Length, initiator.CmdSN++, initiator.ExpStatSN)
            .WriteTo(bhs, Write16(lba, (uint)(data.Length / 512)));
        await SendInFlushesAsync(initiator, bhs, data.AsMemory(0, immediateBytes));
        return await initiator.ReceiveAsync() ?? throw new InvalidOperationException("the target closed the connection");
    }

    private static Task SendDataOutAsync(TestInitiator initiator, ReadyToTransferPdu r2t, byte[] data, int offset, int length, uint dataSn, bool final)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new DataOutPdu(final, length, 0, r2t.InitiatorTaskTag, r2t.TargetTransferTag, initiator.ExpStatSN, dataSn, (uint)offset).WriteTo(bhs);
        return SendInFlushesAsync(initiator, bhs, data.AsMemory(offset, length));
    }

    /// <summary>
    /// Sends one PDU in flushes of 32 KiB, as a socket delivers it: the target sees the header before
    /// the data is all there (the test pipe stops its writer at 64 KiB), so a large segment is taken
    /// through the payload feature.
    /// </summary>
    private static async Task SendInFlushesAsync(TestInitiator initiator, byte[] bhs, ReadOnlyMemory<byte> data)
    {
        var wire = new ArrayBufferWriter<byte>();
        PduWriter.Write(wire, initiator.HeaderDigest, initiator.DataDigest, bhs, data.Span);
        var bytes = wire.WrittenMemory;
        for (var at = 0; at < bytes.Length; at += 32 * Kib)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await initiator.Output.WriteAsync(bytes.Slice(at, Math.Min(32 * Kib, bytes.Length - at)), timeout.Token);
        }
    }

    private static async Task PingAsync(TestInitiator initiator)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new NopOutPdu(true, 0, 0, 0x99, BasicHeaderSegment.ReservedTag, initiator.CmdSN, initiator.ExpStatSN).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var reply = await initiator.ReceiveAsync() ?? throw new InvalidOperationException("the target closed the connection");
        Assert.True(NopInPdu.TryRead(reply.Header, out var nopIn));
        Assert.Equal(0x99u, nopIn.InitiatorTaskTag);
    }

    /// <summary>A device whose pull covering <see cref="FailAtOffset"/> takes 64 KiB of its source and fails, as a disk failing in the middle of a write.</summary>
    private sealed class FailingDevice(IBlockDevice inner) : ForwardingDevice(inner), IBlockDevice
    {
        public long FailAtOffset { get; set; } = -1;

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            if (FailAtOffset >= offsetBytes && FailAtOffset < offsetBytes + lengthBytes)
            {
                source.Fill(new byte[64 * Kib]);
                throw new StorageException(StorageError.IoError, "the disk failed in the middle of the write");
            }

            Inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
        }
    }
}
