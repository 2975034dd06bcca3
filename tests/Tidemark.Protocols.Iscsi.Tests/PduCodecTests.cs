using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class PduCodecTests
{
    [Fact]
    public void ScsiCommandPdu_WriteTo_MatchesRfc7143Layout()
    {
        var bhs = new byte[48];
        byte[] cdb = [0x28, 0, 0, 0, 0, 0x10, 0, 0, 8, 0];
        new ScsiCommandPdu(true, true, true, false, 1, 0x000123, 0x0001_0000_0000_0000, 0xAABBCCDD, 4096, 7, 9).WriteTo(bhs, cdb);

        Assert.Equal(0x41, bhs[0]); // immediate bit + opcode 01h
        Assert.Equal(0xC1, bhs[1]); // F, R, ATTR=simple
        Assert.Equal(0, bhs[4]); // TotalAHSLength
        Assert.Equal(new byte[] { 0x00, 0x01, 0x23 }, bhs[5..8]); // DataSegmentLength, 24 bits
        Assert.Equal(new byte[] { 0, 1, 0, 0, 0, 0, 0, 0 }, bhs[8..16]); // LUN 1
        Assert.Equal(new byte[] { 0xAA, 0xBB, 0xCC, 0xDD }, bhs[16..20]); // ITT
        Assert.Equal(new byte[] { 0, 0, 0x10, 0 }, bhs[20..24]); // EDTL
        Assert.Equal(new byte[] { 0, 0, 0, 7 }, bhs[24..28]); // CmdSN
        Assert.Equal(new byte[] { 0, 0, 0, 9 }, bhs[28..32]); // ExpStatSN
        Assert.Equal(cdb, bhs[32..42]);

        Assert.True(ScsiCommandPdu.TryRead(bhs, out var parsed));
        Assert.Equal(0xAABBCCDDu, parsed.InitiatorTaskTag);
        Assert.Equal(4096u, parsed.ExpectedDataTransferLengthBytes);
        Assert.True(parsed.Read);
        Assert.False(parsed.Write);
        Assert.True(parsed.Immediate);
    }

    [Fact]
    public void ScsiResponsePdu_WriteTo_SetsUnderflowAndSequenceFields()
    {
        var bhs = new byte[48];
        new ScsiResponsePdu(false, true, 0, 0x02, 20, 0x11223344, new TargetSequence(5, 6, 70), 3, 512).WriteTo(bhs);

        Assert.Equal(0x21, bhs[0]);
        Assert.Equal(0x82, bhs[1]); // bit 7 always, U bit 1
        Assert.Equal(0x00, bhs[2]); // response: command completed at target
        Assert.Equal(0x02, bhs[3]); // CHECK CONDITION
        Assert.Equal(20, bhs[7]);
        Assert.Equal(new byte[] { 0x11, 0x22, 0x33, 0x44 }, bhs[16..20]);
        Assert.Equal(new byte[] { 0, 0, 0, 5 }, bhs[24..28]); // StatSN
        Assert.Equal(new byte[] { 0, 0, 0, 6 }, bhs[28..32]); // ExpCmdSN
        Assert.Equal(new byte[] { 0, 0, 0, 70 }, bhs[32..36]); // MaxCmdSN
        Assert.Equal(new byte[] { 0, 0, 0, 3 }, bhs[36..40]); // ExpDataSN
        Assert.Equal(new byte[] { 0, 0, 2, 0 }, bhs[44..48]); // ResidualCount
    }

    [Fact]
    public void DataInPdu_WithStatus_SetsFinalStatusAndResidualBits()
    {
        var bhs = new byte[48];
        new DataInPdu(true, true, true, false, 0, 8192, 0, 1, new TargetSequence(10, 11, 12), 2, 16384, 100).WriteTo(bhs);

        Assert.Equal(0x25, bhs[0]);
        Assert.Equal(0x85, bhs[1]); // F, O, S
        Assert.Equal(new byte[] { 0x00, 0x20, 0x00 }, bhs[5..8]);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, bhs[20..24]); // TTT reserved
        Assert.Equal(new byte[] { 0, 0, 0, 10 }, bhs[24..28]); // StatSN only with S
        Assert.Equal(new byte[] { 0, 0, 0, 2 }, bhs[36..40]); // DataSN
        Assert.Equal(new byte[] { 0, 0, 0x40, 0 }, bhs[40..44]); // BufferOffset
        Assert.Equal(new byte[] { 0, 0, 0, 100 }, bhs[44..48]);
    }

    [Fact]
    public void DataInPdu_WithoutStatus_LeavesStatusFieldsZero()
    {
        var bhs = new byte[48];
        new DataInPdu(false, false, true, true, 2, 512, 0, 1, new TargetSequence(10, 11, 12), 0, 0, 100).WriteTo(bhs);

        Assert.Equal(0x00, bhs[1]);
        Assert.Equal(0, bhs[3]);
        Assert.Equal(new byte[4], bhs[24..28]);
        Assert.Equal(new byte[4], bhs[44..48]);
    }

    [Fact]
    public void ReadyToTransferPdu_RoundTrip_PreservesFields()
    {
        var bhs = new byte[48];
        var r2t = new ReadyToTransferPdu(0, 7, 99, new TargetSequence(1, 2, 3), 4, 65536, 262144);
        r2t.WriteTo(bhs);

        Assert.Equal(0x31, bhs[0]);
        Assert.Equal(0x80, bhs[1]);
        Assert.True(ReadyToTransferPdu.TryRead(bhs, out var parsed));
        Assert.Equal(r2t, parsed);
    }

    [Fact]
    public void LoginRequestPdu_RoundTrip_PreservesStagesIsidAndTsih()
    {
        var bhs = new byte[48];
        var login = new LoginRequestPdu(true, false, 1, 3, 0, 0, 100, 0x80_12_34_56_78_9A, 0, 5, 1, 42, 0);
        login.WriteTo(bhs);

        Assert.Equal(0x43, bhs[0]); // login is always immediate
        Assert.Equal(0x87, bhs[1]); // T, CSG=1, NSG=3
        Assert.Equal(new byte[] { 0x80, 0x12, 0x34, 0x56, 0x78, 0x9A, 0, 0 }, bhs[8..16]);
        Assert.True(LoginRequestPdu.TryRead(bhs, out var parsed));
        Assert.Equal(login with { }, parsed with { });
    }

    [Fact]
    public void LoginResponsePdu_WriteTo_PutsStatusClassAndDetail()
    {
        var bhs = new byte[48];
        new LoginResponsePdu(false, false, 0, 0, 0, 1, 0, 5, new TargetSequence(1, 2, 3), LoginStatus.AuthorizationFailure).WriteTo(bhs);

        Assert.Equal(0x23, bhs[0]);
        Assert.Equal(0x02, bhs[36]);
        Assert.Equal(0x02, bhs[37]);
    }

    [Fact]
    public void RejectPdu_WriteTo_UsesReservedTag()
    {
        var bhs = new byte[48];
        new RejectPdu(RejectReason.ProtocolError, 48, new TargetSequence(1, 2, 3), 0).WriteTo(bhs);

        Assert.Equal(0x3F, bhs[0]);
        Assert.Equal(0x04, bhs[2]);
        Assert.Equal(48, bhs[7]);
        Assert.Equal(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF }, bhs[16..20]);
    }

    [Fact]
    public void TaskManagementRequestPdu_TryRead_DecodesFunction()
    {
        var bhs = new byte[48];
        new TaskManagementRequestPdu(true, TaskManagementFunction.LogicalUnitReset, 0, 9, 0xFFFFFFFF, 3, 4, 0, 0).WriteTo(bhs);

        Assert.Equal(0x85, bhs[1]);
        Assert.True(TaskManagementRequestPdu.TryRead(bhs, out var parsed));
        Assert.Equal(TaskManagementFunction.LogicalUnitReset, parsed.Function);
    }

    [Fact]
    public void TryRead_WrongOpcodeOrShortSpan_ReturnsFalse()
    {
        var bhs = new byte[48];
        new NopOutPdu(true, 0, 0, 1, 0xFFFFFFFF, 1, 0).WriteTo(bhs);

        Assert.False(ScsiCommandPdu.TryRead(bhs, out _));
        Assert.False(NopOutPdu.TryRead(bhs.AsSpan(0, 47), out _));
        Assert.True(NopOutPdu.TryRead(bhs, out _));
    }

    [Fact]
    public void TextParameters_AppendThenParse_RoundTrips()
    {
        var writer = new ArrayBufferWriter<byte>();
        TextParameters.Append(writer, "MaxBurstLength", "262144");
        TextParameters.Append(writer, "HeaderDigest", "CRC32C,None");
        var pairs = new List<KeyValuePair<string, string>>();

        Assert.True(TextParameters.TryParse(writer.WrittenSpan, pairs));
        Assert.Equal([new("MaxBurstLength", "262144"), new("HeaderDigest", "CRC32C,None")], pairs);
    }

    [Fact]
    public void TextParameters_KeyWithoutEquals_IsRejected()
    {
        Assert.False(TextParameters.TryParse("NoEqualsSign\0"u8, []));
        Assert.False(TextParameters.TryParse("=value\0"u8, []));
    }
}
