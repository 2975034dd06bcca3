using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>Target-initiated Asynchronous Messages (RFC 7143 11.9).</summary>
public sealed class AsyncEventTests
{
    [Fact]
    public async Task RequestLogout_FullFeature_SendsAsyncLogoutRequestAndLogoutEndsSession()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);

        var sent = await initiator.Connection.RequestLogoutAsync(TimeSpan.FromSeconds(7));
        var message = await initiator.ReceiveAsync();
        Assert.True(AsyncMessagePdu.TryRead(message!.Value.Header, out var pdu));
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new LogoutRequestPdu(true, 0, 9, 0, initiator.CmdSN, pdu.Sequence.StatSN + 1).WriteTo(bhs);
        await initiator.SendAsync(bhs);
        var reply = await initiator.ReceiveAsync();

        Assert.True(sent);
        Assert.Equal((AsyncEvent.LogoutRequest, (ushort)7), (pdu.Event, pdu.Parameter3));
        Assert.Equal(initiator.ExpStatSN, pdu.Sequence.StatSN);
        Assert.Equal(BasicHeaderSegment.ReservedTag, BitConverter.ToUInt32(message.Value.Header.AsSpan(16, 4)));
        Assert.Empty(message.Value.Data);
        Assert.True(LogoutResponsePdu.TryRead(reply!.Value.Header, out var logout));
        Assert.Equal((byte)0, logout.Response);
        Assert.Equal(pdu.Sequence.StatSN + 1, logout.Sequence.StatSN);
        Assert.Null(await initiator.ReceiveAsync());
    }

    [Fact]
    public async Task RequestLogout_BeforeLogin_ReturnsFalseAndSendsNothing()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));

        var sent = await initiator.Connection.RequestLogoutAsync(TimeSpan.FromSeconds(5));

        Assert.False(sent);
        await initiator.Output.CompleteAsync();
        Assert.Null(await initiator.ReceiveAsync());
    }
}
