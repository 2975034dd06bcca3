using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Issue 22: READs on a unit whose device serves many at once (PreferredConcurrency above 1, a
/// RADOS-backed volume) are started without waiting and answered as they end, in any order, with
/// StatSN in wire order; everything else keeps its meaning (ADR 0021, iSCSI).
/// </summary>
public sealed class AsyncReadTests
{
    private const int BlockBytes = 512;
    private const int ReadBytes = 4096;
    private const long DeviceBytes = 4L << 20;

    private static readonly byte[] Content = PiecesSession.Pattern((int)DeviceBytes, 7);

    private static IscsiLimits Limits(int reads = 32, long bytes = 16 << 20) =>
        new() { ProtocolErrorLinger = TimeSpan.FromMilliseconds(200), MaxReadsInFlight = reads, MaxReadBytesInFlight = bytes };

    private static async Task<(TestInitiator Initiator, HeldReadDevice Device, IscsiTarget Target)> StartAsync(
        int concurrency = 32, IscsiLimits? limits = null, bool digests = false, TimeSpan? randomDelay = null)
    {
        var device = new HeldReadDevice(DeviceBytes, concurrency) { RandomDelay = randomDelay };
        device.Write(0, Content, forceUnitAccess: false);
        var catalog = new IscsiTargetCatalog();
        var target = catalog.AddOrUpdate(new IscsiTargetDefinition(Catalogs.Target, [new IscsiLunDefinition(0, device)]));
        var digest = digests ? "CRC32C" : "None";
        var initiator = await PiecesSession.LoginAsync(catalog, limits ?? Limits(), null, ("HeaderDigest", digest), ("DataDigest", digest));
        return (initiator, device, target);
    }

    private static byte[] Command(TestInitiator initiator, uint itt, byte[] cdb, uint expected, bool read = true, bool write = false, int immediateBytes = 0, byte attribute = 1)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, read, write, attribute, immediateBytes, 0, itt, expected, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(bhs, cdb);
        return bhs;
    }

    private static byte[] Read(TestInitiator initiator, uint itt, ulong lba, int bytes = ReadBytes, byte attribute = 1) =>
        Command(initiator, itt, PiecesSession.Cdb16(ScsiOpcode.Read16, lba, (uint)(bytes / BlockBytes)), (uint)bytes, attribute: attribute);

    private static byte[] Expected(ulong lba, int bytes = ReadBytes) => Content.AsSpan((int)lba * BlockBytes, bytes).ToArray();

    private static async Task<TaskManagementResponse> TaskManagementAsync(TestInitiator initiator, TaskManagementFunction function, uint itt, uint referenced = 0xFFFFFFFF)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new TaskManagementRequestPdu(true, function, 0, itt, referenced, initiator.CmdSN, initiator.ExpStatSN, initiator.CmdSN - 1, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var reply = (await initiator.ReceiveAsync())!.Value;
        Assert.True(TaskManagementResponsePdu.TryRead(reply.Header, out var response), "the next PDU is the TMF response");
        return response.Response;
    }

    /// <summary>Receives <paramref name="count"/> answers of 4 KiB READs: data by tag, and the StatSNs in arrival order.</summary>
    private static async Task<(Dictionary<uint, byte[]> Data, List<uint> StatSns)> ReceiveReadsAsync(TestInitiator initiator, int count)
    {
        var data = new Dictionary<uint, byte[]>();
        var statSns = new List<uint>();
        for (var i = 0; i < count; i++)
        {
            var pdu = (await initiator.ReceiveAsync())!.Value;
            Assert.True(DataInPdu.TryRead(pdu.Header, out var dataIn), "a Data-In with status");
            Assert.True(dataIn.HasStatus);
            Assert.Equal((byte)ScsiStatus.Good, dataIn.Status);
            Assert.True(data.TryAdd(dataIn.InitiatorTaskTag, pdu.Data), "each tag answered once");
            statSns.Add(dataIn.Sequence.StatSN);
        }

        return (data, statSns);
    }

    private static async Task<byte[]> TestUnitReadyAsync(TestInitiator initiator, uint itt)
    {
        await initiator.SendAsync(Command(initiator, itt, new byte[6], 0, read: false));
        var reply = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var response), "a SCSI Response");
        Assert.Equal(itt, response.InitiatorTaskTag);
        return reply.Data;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ManyReadsInFlight_EndingInReverse_AreAnsweredWithTheirDataAndStatSnInWireOrder(bool digests)
    {
        var (initiator, device, _) = await StartAsync(digests: digests);
        await using var session = initiator;
        const int Reads = 16;
        foreach (var i in Enumerable.Range(0, Reads))
        {
            // Written together, sent in one flush: the target finds READs behind READs.
            PduWriter.Write(initiator.Output, digests, digests, Read(initiator, 0x100u + (uint)i, (ulong)(i * 64)), []);
        }

        await initiator.Output.FlushAsync();

        await device.WaitHeldAsync(Reads);
        await device.ReleaseAsync();
        var (data, statSns) = await ReceiveReadsAsync(initiator, Reads);

        for (var i = 0; i < Reads; i++)
        {
            Assert.Equal(Expected((ulong)(i * 64)), data[0x100u + (uint)i]);
        }

        Assert.Equal(Enumerable.Range(0, Reads).Select(i => statSns[0] + (uint)i), statSns);
        Assert.Equal(Reads, device.AsyncReads);
        Assert.Equal(0, device.SyncReads);
        Assert.Equal(0, initiator.Connection.ReadsInFlight);

        // The session goes on with the next StatSN.
        await TestUnitReadyAsync(initiator, 0x200);
    }

    [Fact]
    public async Task AStreamOfReads_EndingAfterRandomDelays_KeepsDataTagsAndStatSnStraight()
    {
        var (initiator, device, _) = await StartAsync(randomDelay: TimeSpan.FromMilliseconds(2));
        await using var session = initiator;
        const int Total = 400;
        const int Depth = 32;
        var sent = 0;
        static ulong LbaOf(uint itt) => (ulong)(itt * 8 % (DeviceBytes / BlockBytes - 8));
        async Task SendNextAsync()
        {
            var itt = (uint)sent;
            await initiator.SendRawAsync(Read(initiator, itt, LbaOf(itt)));
            sent++;
        }

        while (sent < Depth)
        {
            await SendNextAsync();
        }

        uint? lastStatSn = null;
        for (var received = 0; received < Total; received++)
        {
            var (data, statSns) = await ReceiveReadsAsync(initiator, 1);
            var (itt, bytes) = data.Single();
            Assert.Equal(Expected(LbaOf(itt)), bytes);
            Assert.True(lastStatSn is null || statSns[0] == lastStatSn + 1, "StatSN rises by one per response");
            lastStatSn = statSns[0];
            if (sent < Total)
            {
                await SendNextAsync();
            }
        }

        Assert.True(device.AsyncReads > Total / 2, $"{device.AsyncReads} of {Total} reads asynchronous");
        Assert.Equal(0, initiator.Connection.ReadsInFlight);
    }

    [Fact]
    public async Task AReadThatFails_IsAnsweredWithUnrecoveredReadError_AndTheOthersWithData()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        device.FailAt(64 * BlockBytes, StorageError.IoError);
        await initiator.SendRawAsync([.. Read(initiator, 1, 0), .. Read(initiator, 2, 64), .. Read(initiator, 3, 128)]);
        await device.WaitHeldAsync(3);
        await device.ReleaseAsync();

        var good = 0;
        for (var i = 0; i < 3; i++)
        {
            var pdu = (await initiator.ReceiveAsync())!.Value;
            if (ScsiResponsePdu.TryRead(pdu.Header, out var failed))
            {
                Assert.Equal(2u, failed.InitiatorTaskTag);
                Assert.Equal((byte)ScsiStatus.CheckCondition, failed.Status);
                Assert.True(SenseData.TryRead(pdu.Data.AsSpan(2), out var sense));
                Assert.Equal(SenseData.UnrecoveredReadError, sense);
            }
            else
            {
                Assert.True(DataInPdu.TryRead(pdu.Header, out var dataIn));
                Assert.NotEqual(2u, dataIn.InitiatorTaskTag);
                good++;
            }
        }

        Assert.Equal(2, good);
    }

    [Fact]
    public async Task AWriteBehindReads_WaitsUntilTheyAreAnswered()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        var newData = Enumerable.Repeat((byte)0xEE, ReadBytes).ToArray();
        byte[] reads = [.. Read(initiator, 1, 0), .. Read(initiator, 2, 8)];
        var write = Command(initiator, 9, PiecesSession.Cdb16(ScsiOpcode.Write16, 0, ReadBytes / BlockBytes), ReadBytes, read: false, write: true, immediateBytes: ReadBytes);
        await initiator.SendRawAsync([.. reads, .. write, .. newData]);

        await device.WaitHeldAsync(2);
        await Task.Delay(200);
        var stored = new byte[ReadBytes];
        device.Read(0, stored);
        Assert.Equal(Expected(0), stored); // the WRITE has not overtaken the READ of the same blocks

        await device.ReleaseAsync();
        var (data, statSns) = await ReceiveReadsAsync(initiator, 2);
        Assert.Equal(Expected(0), data[1]);
        var reply = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var written));
        Assert.Equal(9u, written.InitiatorTaskTag);
        Assert.Equal(statSns[^1] + 1, written.Sequence.StatSN);
        device.Read(0, stored);
        Assert.Equal(newData, stored);
    }

    [Fact]
    public async Task AbortTask_OfAReadInFlight_ItGetsNoAnswerAfterTheTmfResponse()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        await initiator.SendRawAsync([.. Read(initiator, 1, 0), .. Read(initiator, 2, 8)]);
        await device.WaitHeldAsync(2);

        Assert.Equal(TaskManagementResponse.FunctionComplete, await TaskManagementAsync(initiator, TaskManagementFunction.AbortTask, 0x50, referenced: 1));
        await device.ReleaseAsync();
        var (data, _) = await ReceiveReadsAsync(initiator, 1);
        Assert.Equal(new[] { 2u }, data.Keys);

        // The aborted READ's answer never comes: the next PDU answers the next command.
        await TestUnitReadyAsync(initiator, 3);
        Assert.Equal(0, initiator.Connection.ReadsInFlight);
    }

    [Theory]
    [InlineData(TaskManagementFunction.AbortTaskSet)]
    [InlineData(TaskManagementFunction.ClearTaskSet)]
    [InlineData(TaskManagementFunction.LogicalUnitReset)]
    [InlineData(TaskManagementFunction.TargetWarmReset)]
    public async Task TaskSetFunctions_WithReadsInFlight_DropTheirAnswers(TaskManagementFunction function)
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        await initiator.SendRawAsync([.. Read(initiator, 1, 0), .. Read(initiator, 2, 8), .. Read(initiator, 3, 16)]);
        await device.WaitHeldAsync(3);

        Assert.Equal(TaskManagementResponse.FunctionComplete, await TaskManagementAsync(initiator, function, 0x50));
        await device.ReleaseAsync();

        // No READ answer follows the TMF response: the next PDU answers the next command.
        var sense = await TestUnitReadyAsync(initiator, 4);
        if (function == TaskManagementFunction.LogicalUnitReset)
        {
            Assert.True(SenseData.TryRead(sense.AsSpan(2), out var attention));
            Assert.Equal(SenseData.LogicalUnitResetOccurred, attention);
        }

        Assert.Equal(0, initiator.Connection.ReadsInFlight);
    }

    [Fact]
    public async Task Logout_WithReadsInFlight_AnswersThemFirst()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        byte[] reads = [.. Read(initiator, 1, 0), .. Read(initiator, 2, 8)];
        var logout = new byte[BasicHeaderSegment.LengthBytes];
        new LogoutRequestPdu(false, 0, 9, 0, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(logout);
        await initiator.SendRawAsync([.. reads, .. logout]);
        await device.WaitHeldAsync(2);

        await device.ReleaseAsync();
        var (data, statSns) = await ReceiveReadsAsync(initiator, 2);
        var reply = (await initiator.ReceiveAsync())!.Value;

        Assert.Equal(2, data.Count);
        Assert.True(LogoutResponsePdu.TryRead(reply.Header, out var response));
        Assert.Equal(statSns[^1] + 1, response.Sequence.StatSN);
        Assert.Null(await initiator.ReceiveAsync());
    }

    [Fact]
    public async Task LargeReadsInFlight_AreSentInSegmentsAndBursts_EachReadWhole()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        const int Large = 256 << 10; // 32 Data-In PDUs at the initiator's default 8 KiB MaxRecvDataSegmentLength
        await initiator.SendRawAsync([.. Read(initiator, 1, 0, Large), .. Read(initiator, 2, 1024, Large)]);
        await device.WaitHeldAsync(2);
        await device.ReleaseAsync();

        var statSns = new List<uint>();
        for (var read = 0; read < 2; read++)
        {
            var data = new MemoryStream();
            uint? itt = null;
            for (uint dataSn = 0; ; dataSn++)
            {
                var pdu = (await initiator.ReceiveAsync())!.Value;
                Assert.True(DataInPdu.TryRead(pdu.Header, out var dataIn));
                itt ??= dataIn.InitiatorTaskTag;
                Assert.Equal(itt, dataIn.InitiatorTaskTag); // one READ's PDUs are not interleaved with another's
                Assert.Equal(dataSn, dataIn.DataSN);
                Assert.Equal((uint)data.Length, dataIn.BufferOffset);
                data.Write(pdu.Data);
                if (dataIn.HasStatus)
                {
                    statSns.Add(dataIn.Sequence.StatSN);
                    break;
                }
            }

            Assert.Equal(Expected(itt == 1 ? 0ul : 1024ul, Large), data.ToArray());
        }

        Assert.Equal(statSns[0] + 1, statSns[1]);
    }

    [Fact]
    public async Task Close_WithReadsInFlight_EndsOnceTheDeviceIsDoneWithThem()
    {
        var (initiator, device, _) = await StartAsync();
        await initiator.SendRawAsync([.. Read(initiator, 1, 0), .. Read(initiator, 2, 8)]);
        await device.WaitHeldAsync(2);

        await initiator.Output.CompleteAsync();
        await Task.Delay(200);
        Assert.False(initiator.Running.IsCompleted); // the buffers are the device's until its reads end

        await device.ReleaseAsync();
        await initiator.Running.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, initiator.Connection.ReadsInFlight);
        await initiator.DisposeAsync();
    }

    [Theory]
    [InlineData(4, 16 << 20)]
    [InlineData(32, 4 * ReadBytes)]
    public async Task TheBoundsOnReadsInFlight_AreHonoured(int reads, long bytes)
    {
        var (initiator, device, _) = await StartAsync(limits: Limits(reads, bytes));
        await using var session = initiator;
        const int Sent = 10;
        // A command behind the last READ: none is ever alone (that one would be read inline, ADR 0021).
        byte[] batch = [.. Enumerable.Range(0, Sent).SelectMany(i => Read(initiator, 0x10u + (uint)i, (ulong)(i * 8)))];
        await initiator.SendRawAsync([.. batch, .. Command(initiator, 0x40, new byte[6], 0, read: false)]);

        await device.WaitHeldAsync(4);
        await Task.Delay(100);
        Assert.Equal(4, device.HeldCount);

        var answered = new Dictionary<uint, byte[]>();
        while (answered.Count < Sent)
        {
            await device.WaitHeldAsync(1);
            await device.ReleaseAsync(1);
            foreach (var (tag, data) in (await ReceiveReadsAsync(initiator, 1)).Data)
            {
                answered.Add(tag, data);
            }
        }

        var ready = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(ready.Header, out var response));
        Assert.Equal(0x40u, response.InitiatorTaskTag);
        Assert.Equal(4, device.PeakHeld);
        Assert.Equal(Sent, device.AsyncReads);
        Assert.Equal(Enumerable.Range(0, Sent).Select(i => Expected((ulong)(i * 8))), Enumerable.Range(0, Sent).Select(i => answered[0x10u + (uint)i]));
    }

    /// <summary>A READ refused among reads in flight gets exactly the answer the synchronous path gives.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(32)]
    public async Task RefusedReads_AreAnsweredAsOnTheSynchronousPath(int concurrency)
    {
        var (initiator, device, target) = await StartAsync(concurrency);
        await using var session = initiator;
        var unit = target.Units[0];
        var answers = new List<(byte Status, SenseData? Sense)>();

        // Out of range, behind a READ in flight (on the synchronous path the READ before it is answered first).
        await initiator.SendRawAsync([.. Read(initiator, 0x10, 0), .. Read(initiator, 0x11, (ulong)(DeviceBytes / BlockBytes) - 4)]);
        (byte[] Header, byte[] Data) refused;
        if (concurrency > 1)
        {
            await device.WaitHeldAsync(1);
            refused = (await initiator.ReceiveAsync())!.Value; // at once, before the held READ's answer
            await device.ReleaseAsync();
            Assert.Equal(new[] { 0x10u }, (await ReceiveReadsAsync(initiator, 1)).Data.Keys);
        }
        else
        {
            Assert.Equal(new[] { 0x10u }, (await ReceiveReadsAsync(initiator, 1)).Data.Keys);
            refused = (await initiator.ReceiveAsync())!.Value;
        }

        answers.Add(Answer(refused, 0x11));

        // A unit attention, and a reservation of another nexus: a READ with a command behind it (not alone).
        unit.Reset();
        await initiator.SendRawAsync([.. Read(initiator, 0x21, 0), .. Command(initiator, 0x22, new byte[6], 0, read: false)]);
        answers.Add(Answer((await initiator.ReceiveAsync())!.Value, 0x21));
        Assert.NotNull(await initiator.ReceiveAsync());

        var other = unit.OpenNexus("iqn.2026-11.dev.tidemark:other,i,0x1");
        Assert.True(unit.Execute(other, new ScsiCommand([ScsiOpcode.Reserve6, 0, 0, 0, 0, 0], [], [], new byte[32])).IsGood);
        await initiator.SendRawAsync([.. Read(initiator, 0x30, 0), .. Read(initiator, 0x31, 8)]);
        answers.Add(Answer((await initiator.ReceiveAsync())!.Value, 0x30));
        Assert.NotNull(await initiator.ReceiveAsync());

        var expected = new (byte Status, SenseData? Sense)[]
        {
            ((byte)ScsiStatus.CheckCondition, SenseData.LbaOutOfRange),
            ((byte)ScsiStatus.CheckCondition, SenseData.LogicalUnitResetOccurred),
            ((byte)ScsiStatus.ReservationConflict, null),
        };
        Assert.Equal(expected, answers);
        Assert.Equal(0, initiator.Connection.ReadsInFlight);
    }

    private static (byte Status, SenseData? Sense) Answer((byte[] Header, byte[] Data) pdu, uint itt)
    {
        Assert.True(ScsiResponsePdu.TryRead(pdu.Header, out var response), "a SCSI Response");
        Assert.Equal(itt, response.InitiatorTaskTag);
        return (response.Status, pdu.Data.Length > 2 && SenseData.TryRead(pdu.Data.AsSpan(2), out var sense) ? sense : null);
    }

    [Fact]
    public async Task OnALocalUnit_ReadsStayOnTheSynchronousPath()
    {
        var (initiator, device, _) = await StartAsync(concurrency: 1);
        await using var session = initiator;
        await initiator.SendRawAsync([.. Enumerable.Range(0, 8).SelectMany(i => Read(initiator, 0x10u + (uint)i, (ulong)(i * 8)))]);

        var (data, _) = await ReceiveReadsAsync(initiator, 8);

        Assert.Equal(8, data.Count);
        Assert.Equal(0, device.AsyncReads);
        Assert.Equal(8, device.SyncReads);
    }

    [Fact]
    public async Task AReadAlone_StaysInline_EvenOnAUnitThatPrefersMany()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;

        var reply = await initiator.CommandAsync(PiecesSession.Cdb16(ScsiOpcode.Read16, 8, 8), ReadBytes, read: true, write: false, itt: 0x40);

        Assert.True(DataInPdu.TryRead(reply.Header, out var dataIn));
        Assert.True(dataIn.HasStatus);
        Assert.Equal(Expected(8), reply.Data);
        Assert.Equal(0, device.AsyncReads);
        Assert.Equal(1, device.SyncReads);
    }

    [Fact]
    public async Task AnOrderedRead_WaitsForTheReadsBeforeIt()
    {
        var (initiator, device, _) = await StartAsync();
        await using var session = initiator;
        await initiator.SendRawAsync([.. Read(initiator, 1, 0), .. Read(initiator, 2, 8), .. Read(initiator, 3, 16, attribute: 2)]);
        await device.WaitHeldAsync(2);
        await Task.Delay(100);
        Assert.Equal(0, device.SyncReads);

        await device.ReleaseAsync();
        var (data, _) = await ReceiveReadsAsync(initiator, 3);

        Assert.Equal(3u, data.Keys.Last()); // answered after both, read inline
        Assert.Equal(1, device.SyncReads);
        Assert.Equal(Expected(16), data[3]);
    }
}
