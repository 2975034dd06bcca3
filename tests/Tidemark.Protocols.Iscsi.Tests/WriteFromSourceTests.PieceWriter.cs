using System.Collections.Concurrent;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Issue 18's last row: segments the transport staged whole are handed over and written on the
/// connection's piece writer while the connection reads on (IscsiConnection.PieceWriter.cs). A device
/// that holds its writes shows what waits for them and what does not.
/// </summary>
public sealed partial class WriteFromSourceTests
{
    [Fact]
    public async Task HandedOverPieces_AreWrittenOnThePieceWriter_WhileR2TAndDataOutGoOn()
    {
        var (memory, device, catalog) = HeldCatalog();
        await using var initiator = await LoginAsync(catalog, SourceKind.HandedOver);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 20);
        device.Released.Reset();

        // The immediate segment is held in the device, yet the R2T for the rest comes back, and the
        // rest is taken (handed over, queued) while the first piece is still being written.
        var r2t = await StartWriteAsync(initiator, 0x70, 0, data, 256 * Kib);
        Assert.True(await device.Entered.WaitAsync(TimeSpan.FromSeconds(10)));
        await SendRestAsync(initiator, r2t, data);
        await WaitUntilAsync(() => payload.HandedOver == 4);
        var status = initiator.ReceiveAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.False(status.IsCompleted); // no response before its pieces are written
        Assert.Equal(4, payload.Outstanding); // this test transport does not bound them; the socket one does (two pipes)
        Assert.Equal(0, initiator.Connection.BufferedWriteBytes); // source mode rents no piece buffer

        device.Released.Set();
        var reply = await status ?? throw new InvalidOperationException("the target closed the connection");
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var response));
        Assert.Equal((byte)ScsiStatus.Good, response.Status);
        Assert.Equal(data, ReadBack(memory, 0, Mib));
        Assert.Equal(4, initiator.Connection.PiecesHandedOver);
        Assert.All(payload.ConsumerThreads, name => Assert.Equal("iSCSI piece writer", name));
        Assert.Equal(0, payload.Outstanding);
    }

    [Theory]
    [InlineData(TaskManagementFunction.AbortTask)]
    [InlineData(TaskManagementFunction.LogicalUnitReset)]
    public async Task TaskManagement_WhileThePieceWriterHoldsAPiece_WaitsForIt_AndNothingIsWrittenAfterItsResponse(TaskManagementFunction function)
    {
        var (memory, device, catalog) = HeldCatalog();
        await using var initiator = await LoginAsync(catalog, SourceKind.HandedOver);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 21);
        device.Released.Reset();
        var r2t = await StartWriteAsync(initiator, 0x71, 0, data, 256 * Kib);
        Assert.True(await device.Entered.WaitAsync(TimeSpan.FromSeconds(10)));

        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        var referenced = function == TaskManagementFunction.AbortTask ? 0x71u : BasicHeaderSegment.ReservedTag;
        new TaskManagementRequestPdu(true, function, 0, 0x72, referenced, initiator.CmdSN, initiator.ExpStatSN, initiator.CmdSN - 1, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var answer = initiator.ReceiveAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.False(answer.IsCompleted); // the function waits for the piece under way

        device.Released.Set();
        var tmf = await answer ?? throw new InvalidOperationException("the target closed the connection");
        Assert.True(TaskManagementResponsePdu.TryRead(tmf.Header, out var done));
        Assert.Equal(TaskManagementResponse.FunctionComplete, done.Response);
        var writes = device.Log.Count;
        Assert.Equal(data.AsSpan(0, 256 * Kib).ToArray(), ReadBack(memory, 0, 256 * Kib)); // finished, not torn

        // The aborted task's later data is dropped; nothing more reaches the device, and the
        // connection is in step.
        await SendDataOutAsync(initiator, r2t, data, 256 * Kib, 256 * Kib, 0, final: false);
        await PingAsync(initiator);
        Assert.Equal(writes, device.Log.Count);
        Assert.All(ReadBack(memory, 256 * Kib, 768 * Kib), b => Assert.Equal(0, b));
        Assert.Equal(0, payload.Outstanding);
    }

    [Fact]
    public async Task ConnectionClosed_WhileThePieceWriterHoldsAPiece_FinishesIt_DropsTheQueuedOne_AndGivesEveryStagingBack()
    {
        var (memory, device, catalog) = HeldCatalog();
        var initiator = await LoginAsync(catalog, SourceKind.HandedOver);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 22);
        device.Released.Reset();
        var r2t = await StartWriteAsync(initiator, 0x73, 0, data, 256 * Kib);
        Assert.True(await device.Entered.WaitAsync(TimeSpan.FromSeconds(10)));
        await SendDataOutAsync(initiator, r2t, data, 256 * Kib, 256 * Kib, 0, final: false);
        await WaitUntilAsync(() => payload.HandedOver == 2);

        var closed = initiator.DisposeAsync().AsTask();
        await Task.Delay(200);
        Assert.False(closed.IsCompleted); // the piece under way finishes before the session is released

        device.Released.Set();
        await closed;
        Assert.Equal(data.AsSpan(0, 256 * Kib).ToArray(), ReadBack(memory, 0, 256 * Kib));
        Assert.All(ReadBack(memory, 256 * Kib, 256 * Kib), b => Assert.Equal(0, b));
        Assert.Equal(0, payload.Outstanding);
        Assert.Equal(1, payload.DroppedUnread);
        Assert.Equal(0, initiator.Connection.BufferedWriteBytes);
    }

    [Fact]
    public async Task SynchronizeCacheAndRead_BehindQueuedPieces_WaitForThem_AndSeeTheData()
    {
        var (memory, device, catalog) = HeldCatalog();
        await using var initiator = await LoginAsync(catalog, SourceKind.HandedOver);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 23);
        device.Released.Reset();
        var r2t = await StartWriteAsync(initiator, 0x74, 0, data, 256 * Kib);
        Assert.True(await device.Entered.WaitAsync(TimeSpan.FromSeconds(10)));
        await SendRestAsync(initiator, r2t, data);
        await WaitUntilAsync(() => payload.HandedOver == 4);

        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, false, false, 1, 0, 0, 0x75, 0, initiator.CmdSN++, initiator.ExpStatSN)
            .WriteTo(bhs, [ScsiOpcode.SynchronizeCache10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        await initiator.SendAsync(bhs);
        new ScsiCommandPdu(false, true, true, false, 1, 0, 0, 0x76, Mib, initiator.CmdSN++, initiator.ExpStatSN)
            .WriteTo(bhs, PiecesSession.Cdb16(ScsiOpcode.Read16, 0, Mib / 512));
        await initiator.SendAsync(bhs);
        var first = initiator.ReceiveAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.False(first.IsCompleted); // neither overtakes the queued writes

        device.Released.Set();
        var read = new byte[Mib];
        var statuses = new Dictionary<uint, byte>();
        var pdu = await first;
        while (true)
        {
            var (header, segment) = pdu ?? throw new InvalidOperationException("the target closed the connection");
            if (DataInPdu.TryRead(header, out var dataIn))
            {
                segment.CopyTo(read.AsSpan((int)dataIn.BufferOffset));
                if (dataIn.HasStatus)
                {
                    statuses[dataIn.InitiatorTaskTag] = dataIn.Status;
                }
            }
            else
            {
                Assert.True(ScsiResponsePdu.TryRead(header, out var status));
                statuses[status.InitiatorTaskTag] = status.Status;
            }

            if (statuses.Count == 3)
            {
                break;
            }

            pdu = await initiator.ReceiveAsync();
        }

        Assert.All(statuses.Values, s => Assert.Equal((byte)ScsiStatus.Good, s));
        Assert.Equal(data, read);
        Assert.Equal(["write 0", "write 262144", "write 524288", "write 786432", "flush"], device.Log.Where(e => e != "read").ToArray());
    }

    [Fact]
    public async Task ReadsStartedWithoutWaiting_OnAUnitThatPrefersManyInFlight_BehindQueuedPieces_WaitForThem_AndSeeTheData()
    {
        // A RADOS-backed unit: its READs are started with ReadAsync and answered by the replier
        // (IscsiConnection.AsyncReads.cs), yet they too wait for the pieces queued before them.
        var (memory, device, catalog) = HeldCatalog(preferredConcurrency: 32);
        await using var initiator = await LoginAsync(catalog, SourceKind.HandedOver);
        var payload = (SourcePayload)initiator.Payload!;
        var data = PiecesSession.Pattern(Mib, 29);
        device.Released.Reset();
        var r2t = await StartWriteAsync(initiator, 0x80, 0, data, 256 * Kib);
        Assert.True(await device.Entered.WaitAsync(TimeSpan.FromSeconds(10)));
        await SendRestAsync(initiator, r2t, data);
        await WaitUntilAsync(() => payload.HandedOver == 4);

        // Two READs in one send, so the first finds input behind it and is not read inline.
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        for (var i = 0u; i < 2; i++)
        {
            new ScsiCommandPdu(false, true, true, false, 1, 0, 0, 0x81 + i, Mib / 2, initiator.CmdSN++, initiator.ExpStatSN)
                .WriteTo(bhs, PiecesSession.Cdb16(ScsiOpcode.Read16, i * (Mib / 2 / 512), Mib / 2 / 512));
            PduWriter.Write(initiator.Output, false, false, bhs, default);
        }

        await initiator.Output.FlushAsync();
        var first = initiator.ReceiveAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.False(first.IsCompleted); // the reads do not overtake the queued writes

        device.Released.Set();
        var read = new byte[Mib];
        var statuses = new Dictionary<uint, byte>();
        var pdu = await first;
        while (statuses.Count < 3)
        {
            var (header, segment) = pdu ?? throw new InvalidOperationException("the target closed the connection");
            if (DataInPdu.TryRead(header, out var dataIn))
            {
                segment.CopyTo(read.AsSpan((int)((dataIn.InitiatorTaskTag - 0x81) * (Mib / 2)) + (int)dataIn.BufferOffset));
                if (dataIn.HasStatus)
                {
                    statuses[dataIn.InitiatorTaskTag] = dataIn.Status;
                }
            }
            else
            {
                Assert.True(ScsiResponsePdu.TryRead(header, out var status));
                statuses[status.InitiatorTaskTag] = status.Status;
            }

            if (statuses.Count < 3)
            {
                pdu = await initiator.ReceiveAsync();
            }
        }

        Assert.All(statuses.Values, s => Assert.Equal((byte)ScsiStatus.Good, s));
        Assert.Equal(data, read);
        var log = device.Log.ToArray();
        Assert.Equal(["write 0", "write 262144", "write 524288", "write 786432", "read async"], log[..5]); // the second may be read inline: nothing behind it
        Assert.All(log[5..], e => Assert.StartsWith("read", e, StringComparison.Ordinal));
    }

    private static (MemoryBlockDevice Memory, HoldingDevice Device, IscsiTargetCatalog Catalog) HeldCatalog(int preferredConcurrency = 1)
    {
        var memory = new MemoryBlockDevice(16L << 20);
        var device = new HoldingDevice(memory, preferredConcurrency);
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Catalogs.Target, [new IscsiLunDefinition(0, device)]));
        return (memory, device, catalog);
    }

    /// <summary>Answers the R2T of a 1 MiB WRITE whose first 256 KiB came immediate: three Data-Out of 256 KiB.</summary>
    private static async Task SendRestAsync(TestInitiator initiator, ReadyToTransferPdu r2t, byte[] data)
    {
        uint dataSn = 0;
        for (var offset = 256 * Kib; offset < data.Length; offset += 256 * Kib)
        {
            await SendDataOutAsync(initiator, r2t, data, offset, 256 * Kib, dataSn++, offset + (256 * Kib) == data.Length);
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        var deadline = Environment.TickCount64 + 10_000;
        while (!condition())
        {
            Assert.True(Environment.TickCount64 < deadline, "the condition did not hold within 10 s");
            await Task.Delay(5);
        }
    }

    /// <summary>A device whose pulled writes wait while <see cref="Released"/> is reset, and which logs writes and flushes in the order they ran.</summary>
    private sealed class HoldingDevice(IBlockDevice inner, int preferredConcurrency = 1) : ForwardingDevice(inner), IBlockDevice
    {
        public override int PreferredConcurrency => preferredConcurrency;

        public ValueTask ReadAsync(long offsetBytes, Memory<byte> destination, CancellationToken cancellationToken = default)
        {
            Log.Enqueue("read async");
            Inner.Read(offsetBytes, destination.Span);
            return ValueTask.CompletedTask;
        }

        public ManualResetEventSlim Released { get; } = new(true);

        public SemaphoreSlim Entered { get; } = new(0);

        public ConcurrentQueue<string> Log { get; } = new();

        public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
        {
            Entered.Release();
            if (!Released.Wait(TimeSpan.FromSeconds(10)))
            {
                throw new TimeoutException("the test never released the device");
            }

            Inner.WriteFrom(offsetBytes, lengthBytes, source, forceUnitAccess);
            Log.Enqueue($"write {offsetBytes}");
        }

        public override void Flush()
        {
            Log.Enqueue("flush");
            base.Flush();
        }

        public override void Read(long offsetBytes, Span<byte> destination)
        {
            Log.Enqueue("read");
            base.Read(offsetBytes, destination);
        }
    }
}
