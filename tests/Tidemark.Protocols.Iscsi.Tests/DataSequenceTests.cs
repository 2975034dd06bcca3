using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// RFC 7143 7.2.1-7.2.2: a Data-Out out of DataSN order implies a lost PDU. At ErrorRecoveryLevel 0
/// the task ends with CHECK CONDITION "protocol service CRC error" once its data is in, nothing is
/// written, and the connection keeps serving (libiscsi's iSCSIdatasn.iSCSIDataSnInvalid cases).
/// </summary>
public sealed class DataSequenceTests
{
    [Theory]
    [InlineData(new uint[] { 0, 0 })]
    [InlineData(new uint[] { 1, 0 })]
    [InlineData(new uint[] { 27 })]
    [InlineData(new uint[] { uint.MaxValue })]
    public async Task Write_DataOutOutOfDataSnOrder_EndsWithProtocolServiceCrcError_WritesNothing(uint[] dataSns)
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out var device));
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        var length = 512 * dataSns.Length;
        var reply = await initiator.CommandAsync([ScsiOpcode.Write10, 0, 0, 0, 0, 8, 0, 0, (byte)dataSns.Length, 0], (uint)length, read: false, write: true, itt: 0x30);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));

        var bhs = new byte[48];
        for (var i = 0; i < dataSns.Length; i++)
        {
            new DataOutPdu(i == dataSns.Length - 1, 512, 0, 0x30, r2t.TargetTransferTag, initiator.ExpStatSN, dataSns[i], (uint)(i * 512)).WriteTo(bhs);
            await initiator.SendAsync(bhs, Enumerable.Repeat((byte)0xA6, 512).ToArray());
        }

        var response = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(response.Header, out var status));
        Assert.Equal(0x30u, status.InitiatorTaskTag);
        Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
        Assert.True(SenseData.TryRead(response.Data.AsSpan(2), out var sense));
        Assert.Equal(SenseData.ProtocolServiceCrcError, sense);
        var stored = new byte[length];
        device.Read(8 * 512, stored);
        Assert.All(stored, b => Assert.Equal(0, b));

        // The same connection goes on: a correct write afterwards lands.
        reply = await initiator.CommandAsync([ScsiOpcode.Write10, 0, 0, 0, 0, 8, 0, 0, 1, 0], 512, read: false, write: true, itt: 0x31);
        Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out r2t));
        new DataOutPdu(true, 512, 0, 0x31, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
        await initiator.SendAsync(bhs, Enumerable.Repeat((byte)0x5A, 512).ToArray());
        response = (await initiator.ReceiveAsync())!.Value;
        Assert.True(ScsiResponsePdu.TryRead(response.Header, out status));
        Assert.Equal(0, status.Status);
        device.Read(8 * 512, stored.AsSpan(0, 512));
        Assert.All(stored.AsSpan(0, 512).ToArray(), b => Assert.Equal(0x5A, b));
    }
}
