using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class FullFeatureTests
{
    private static byte[] Cdb10(byte opcode, uint lba, ushort blocks) =>
        [opcode, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(blocks >> 8), (byte)blocks, 0];

    [Fact]
    public async Task IdleConnection_IsPingedWithNopIn_AndStaysWhileTheInitiatorAnswers()
    {
        var limits = new IscsiLimits { NopInInterval = TimeSpan.FromMilliseconds(200), NopInTimeout = TimeSpan.FromSeconds(30) };
        await using var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target);
        var statSn = initiator.ExpStatSN;

        for (var ping = 0; ping < 3; ping++)
        {
            var pdu = (await initiator.ReceiveAsync(TimeSpan.FromSeconds(10)))!.Value;
            Assert.True(NopInPdu.TryRead(pdu.Header, out var nopIn));
            Assert.Equal(BasicHeaderSegment.ReservedTag, nopIn.InitiatorTaskTag);
            Assert.NotEqual(BasicHeaderSegment.ReservedTag, nopIn.TargetTransferTag);
            Assert.Equal(statSn, nopIn.Sequence.StatSN); // a ping does not advance StatSN
            var answer = new byte[48];
            new NopOutPdu(true, 0, 0, BasicHeaderSegment.ReservedTag, nopIn.TargetTransferTag, initiator.CmdSN, initiator.ExpStatSN).WriteTo(answer);
            await initiator.SendAsync(answer);
        }

        var inquiry = await initiator.CommandAsync([ScsiOpcode.Inquiry, 0, 0, 0, 36, 0], 36, read: true, write: false);
        Assert.False(initiator.Running.IsCompleted);
        Assert.NotEmpty(inquiry.Data);
    }

    [Fact]
    public async Task SilentInitiator_AfterAPing_IsDisconnectedAtTheTimeout()
    {
        var limits = new IscsiLimits { NopInInterval = TimeSpan.FromMilliseconds(100), NopInTimeout = TimeSpan.FromMilliseconds(300) };
        await using var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target);

        var ping = (await initiator.ReceiveAsync(TimeSpan.FromSeconds(10)))!.Value;
        var closed = await initiator.ReceiveAsync(TimeSpan.FromSeconds(10)); // no answer: the target gives up

        Assert.True(NopInPdu.TryRead(ping.Header, out _));
        Assert.Null(closed);
        await initiator.Running.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Contains("NOP-In", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InitiatorThatTakesNoOutput_IsDisconnectedAtTheKeepaliveTimeout()
    {
        // A 1 MiB READ whose data the initiator never reads: the test pipe stops taking output at
        // 64 KiB, so the target's flush waits on the initiator while the loop holds the output. The
        // keepalive must still end the connection (it cannot ping: the output is not free).
        var limits = new IscsiLimits { NopInInterval = TimeSpan.FromMilliseconds(100), NopInTimeout = TimeSpan.FromMilliseconds(300) };
        await using var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target);
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, true, false, 1, 0, 0, 0x31, 1 << 20, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(bhs, Cdb10(ScsiOpcode.Read10, 0, 2048));
        await initiator.SendAsync(bhs);

        await initiator.Running.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Contains("took no data", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InitiatorThatStopsInTheMiddleOfADataSegment_IsDisconnectedAtTheKeepaliveTimeout()
    {
        // A 256 KiB Data-Out of which 96 KiB arrive: the loop waits for the rest through the payload
        // feature, holding the output, so no ping can go out; the keepalive deadline still applies.
        var limits = new IscsiLimits { NopInInterval = TimeSpan.FromMilliseconds(100), NopInTimeout = TimeSpan.FromMilliseconds(300) };
        await using var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        var length = 256 << 10;
        var reply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Write10, 0, (ushort)(length / 512)), (uint)length, read: false, write: true, itt: 0x32);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new DataOutPdu(true, length, 0, 0x32, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
        await initiator.Output.WriteAsync(bhs);
        await initiator.Output.WriteAsync(new byte[96 << 10]);

        await initiator.Running.WaitAsync(TimeSpan.FromSeconds(10));

        Assert.Contains("took no data", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Write_WithInitialR2T_SolicitsDataThenWrites()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out var device));
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"), ("MaxBurstLength", "4096"), ("MaxOutstandingR2T", "1"));
        var data = Enumerable.Range(0, 8192).Select(i => (byte)i).ToArray();

        var reply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Write10, 8, 16), 8192, read: false, write: true, itt: 0x21);
        for (var burst = 0; burst < 2; burst++)
        {
            Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));
            Assert.Equal((uint)burst, r2t.R2TSN);
            Assert.Equal((uint)(burst * 4096), r2t.BufferOffset);
            Assert.Equal(4096u, r2t.DesiredDataTransferLengthBytes);
            var bhs = new byte[48];
            new DataOutPdu(true, 4096, 0, 0x21, r2t.TargetTransferTag, initiator.ExpStatSN, 0, r2t.BufferOffset).WriteTo(bhs);
            await initiator.SendAsync(bhs, data.AsMemory(burst * 4096, 4096));
            reply = (await initiator.ReceiveAsync())!.Value;
        }

        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var status));
        Assert.Equal(0, status.Status);
        var stored = new byte[8192];
        device.Read(8 * 512, stored);
        Assert.Equal(data, stored);
    }

    [Fact]
    public async Task Write_ImmediateData_CompletesWithoutR2T()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out var device));
        await initiator.LoginAsync(Catalogs.Target, ("ImmediateData", "Yes"));
        var data = Enumerable.Repeat((byte)0xAB, 1024).ToArray();

        var reply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Write10, 0, 2), 1024, false, true, data);

        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var status));
        Assert.Equal(0, status.Status);
        Assert.False(status.ResidualOverflow || status.ResidualUnderflow);
        var stored = new byte[1024];
        device.Read(0, stored);
        Assert.Equal(data, stored);
    }

    [Fact]
    public async Task Read_Good_CollapsesStatusIntoLastDataIn()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out var device));
        await initiator.LoginAsync(Catalogs.Target, ("MaxRecvDataSegmentLength", "4096"));
        var data = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7)).ToArray();
        device.Write(0, data, forceUnitAccess: false);

        var first = await initiator.CommandAsync(Cdb10(ScsiOpcode.Read10, 0, 16), 8192, read: true, write: false);
        var second = (await initiator.ReceiveAsync())!.Value;

        Assert.True(DataInPdu.TryRead(first.Header, out var a));
        Assert.True(DataInPdu.TryRead(second.Header, out var b));
        Assert.False(a.HasStatus);
        Assert.Equal(0u, a.DataSN);
        Assert.True(b.HasStatus);
        Assert.True(b.Final);
        Assert.Equal(1u, b.DataSN);
        Assert.Equal(4096u, b.BufferOffset);
        Assert.Equal(data, first.Data.Concat(second.Data).ToArray());
    }

    [Fact]
    public async Task Read_ExpectedLengthLargerThanTransfer_ReportsUnderflow()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);

        var reply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Read10, 0, 1), 1000, read: true, write: false);

        Assert.True(DataInPdu.TryRead(reply.Header, out var dataIn));
        Assert.True(dataIn.HasStatus);
        Assert.True(dataIn.ResidualUnderflow);
        Assert.Equal(488u, dataIn.ResidualCount);
    }

    [Fact]
    public async Task Read_BeyondEnd_ReturnsCheckConditionWithSense()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);

        var reply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Read10, 32768, 1), 512, read: true, write: false);

        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var response));
        Assert.Equal((byte)ScsiStatus.CheckCondition, response.Status);
        Assert.True(SenseData.TryRead(reply.Data.AsSpan(2), out var sense));
        Assert.Equal(SenseData.LbaOutOfRange, sense with { Information = null });
    }

    [Fact]
    public async Task Command_CmdSnOutsideWindow_IsIgnored()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);
        initiator.CmdSN += 1000;
        var bhs = new byte[48];
        new ScsiCommandPdu(false, true, false, false, 1, 0, 0, 0x31, 0, initiator.CmdSN, initiator.ExpStatSN).WriteTo(bhs, new byte[6]);
        await initiator.SendAsync(bhs);
        initiator.CmdSN -= 1000;

        // The next in-window command is answered; the out-of-window one never is.
        var reply = await initiator.CommandAsync(new byte[6], 0, false, false, itt: 0x32);
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var response));
        Assert.Equal(0x32u, response.InitiatorTaskTag);
    }

    [Fact]
    public async Task LogicalUnitReset_Afterwards_ReportsUnitAttentionOnce()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);
        await initiator.CommandAsync(new byte[6], 0, false, false);

        var bhs = new byte[48];
        new TaskManagementRequestPdu(true, TaskManagementFunction.LogicalUnitReset, 0, 0x40, 0xFFFFFFFF, initiator.CmdSN, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var tmf = await initiator.ReceiveAsync();
        Assert.True(TaskManagementResponsePdu.TryRead(tmf!.Value.Header, out var response));
        Assert.Equal(TaskManagementResponse.FunctionComplete, response.Response);

        var first = await initiator.CommandAsync(new byte[6], 0, false, false);
        Assert.True(SenseData.TryRead(first.Data.AsSpan(2), out var sense));
        Assert.Equal(SenseData.LogicalUnitResetOccurred, sense);
        var second = await initiator.CommandAsync(new byte[6], 0, false, false);
        Assert.True(ScsiResponsePdu.TryRead(second.Header, out var good));
        Assert.Equal(0, good.Status);
    }

    [Fact]
    public async Task AbortTask_PendingWrite_CompletesAndDropsLaterData()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out var device));
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        var r2tReply = await initiator.CommandAsync(Cdb10(ScsiOpcode.Write10, 0, 1), 512, false, true, itt: 0x50);
        Assert.True(ReadyToTransferPdu.TryRead(r2tReply.Header, out var r2t));

        var bhs = new byte[48];
        new TaskManagementRequestPdu(true, TaskManagementFunction.AbortTask, 0, 0x51, 0x50, initiator.CmdSN, initiator.ExpStatSN, initiator.CmdSN - 1, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var tmf = await initiator.ReceiveAsync();
        Assert.True(TaskManagementResponsePdu.TryRead(tmf!.Value.Header, out var response));
        Assert.Equal(TaskManagementResponse.FunctionComplete, response.Response);

        new DataOutPdu(true, 512, 0, 0x50, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs, Enumerable.Repeat((byte)1, 512).ToArray());
        var ping = await initiator.CommandAsync(new byte[6], 0, false, false, itt: 0x52);
        Assert.True(ScsiResponsePdu.TryRead(ping.Header, out var pong));
        Assert.Equal(0x52u, pong.InitiatorTaskTag);
        var stored = new byte[512];
        device.Read(0, stored);
        Assert.All(stored, b => Assert.Equal(0, b));
    }

    [Fact]
    public async Task ReportLuns_MissingLun_InquiryReportsNoDevice()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);

        var luns = await initiator.CommandAsync([ScsiOpcode.ReportLuns, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256, true, false);
        Assert.Equal(16, luns.Data.Length);
        Assert.Equal(8, luns.Data[3]);

        var bhs = new byte[48];
        new ScsiCommandPdu(false, true, true, false, 1, 0, 5UL << 48, 0x60, 36, initiator.CmdSN++, initiator.ExpStatSN)
            .WriteTo(bhs, [ScsiOpcode.Inquiry, 0, 0, 0, 36, 0]);
        await initiator.SendAsync(bhs);
        var inquiry = await initiator.ReceiveAsync();
        Assert.Equal(0x7F, inquiry!.Value.Data[0]);
    }

    [Fact]
    public async Task PipelinedReads_OutputCapReached_AllAnsweredInOrder()
    {
        var limits = new IscsiLimits { MaxQueuedOutputBytes = 4096, ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };
        await using var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target);

        // Ten 8 KiB reads arrive in one write; the loop must flush part-way and still answer all of them.
        var batch = new List<byte>();
        for (uint i = 0; i < 10; i++)
        {
            var bhs = new byte[48];
            new ScsiCommandPdu(false, true, true, false, 1, 0, 0, 0x100 + i, 8192, initiator.CmdSN++, initiator.ExpStatSN)
                .WriteTo(bhs, Cdb10(ScsiOpcode.Read10, i * 16, 16));
            batch.AddRange(bhs);
        }

        await initiator.SendRawAsync([.. batch]);
        await initiator.Output.FlushAsync();
        for (uint i = 0; i < 10; i++)
        {
            var reply = await initiator.ReceiveAsync();
            Assert.True(DataInPdu.TryRead(reply!.Value.Header, out var dataIn));
            Assert.Equal(0x100 + i, dataIn.InitiatorTaskTag);
            Assert.True(dataIn.HasStatus);
        }
    }
}
