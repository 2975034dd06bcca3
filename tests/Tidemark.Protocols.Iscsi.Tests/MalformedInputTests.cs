using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class MalformedInputTests
{
    [Fact]
    public async Task DataOutBeyondExpectedLength_RejectsAndEndsOnlyThatConnection()
    {
        var catalog = Catalogs.Create(out _);
        await using var bad = new TestInitiator(catalog);
        await using var good = new TestInitiator(catalog);
        await bad.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        await good.LoginAsync(Catalogs.Target);

        var r2tReply = await bad.CommandAsync([0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0], 512, false, true, itt: 7);
        Assert.True(ReadyToTransferPdu.TryRead(r2tReply.Header, out var r2t));
        var bhs = new byte[48];
        new DataOutPdu(true, 512, 0, 7, r2t.TargetTransferTag, bad.ExpStatSN, 0, 4096).WriteTo(bhs);
        await bad.SendAsync(bhs, new byte[512]);

        var reject = await bad.ReceiveAsync();
        Assert.True(RejectPdu.TryRead(reject!.Value.Header, out var pdu));
        Assert.Equal(RejectReason.ProtocolError, pdu.Reason);
        Assert.Equal(bhs, reject.Value.Data);
        Assert.Null(await bad.ReceiveAsync());
        Assert.NotNull(bad.Connection.CloseReason);

        var reply = await good.CommandAsync(new byte[6], 0, false, false);
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var ok));
        Assert.Equal(0, ok.Status);
    }

    [Fact]
    public async Task ScsiCommandBeforeLogin_ClosesConnection()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var bhs = new byte[48];
        new ScsiCommandPdu(false, true, false, false, 1, 0, 0, 1, 0, 1, 0).WriteTo(bhs, new byte[6]);
        await initiator.SendAsync(bhs);

        Assert.Null(await initiator.ReceiveAsync());
        await initiator.Running;
        Assert.Contains("before login", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownOpcode_InFullFeaturePhase_RejectsAndContinues()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);
        var bhs = new byte[48];
        bhs[0] = 0x1C;
        await initiator.SendAsync(bhs);

        var reject = await initiator.ReceiveAsync();
        Assert.True(RejectPdu.TryRead(reject!.Value.Header, out var pdu));
        Assert.Equal(RejectReason.CommandNotSupported, pdu.Reason);
        var reply = await initiator.CommandAsync(new byte[6], 0, false, false);
        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out _));
    }

    [Fact]
    public async Task OversizedDataSegment_ClosesConnectionWithoutBufferingIt()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var bhs = new byte[48];
        new LoginRequestPdu(true, false, 0, 1, 0, 0, 0xFFFFFF, 1, 0, 1, 0, 1, 0).WriteTo(bhs);
        await initiator.SendRawAsync(bhs);
        await initiator.Output.FlushAsync();

        Assert.Null(await initiator.ReceiveAsync());
        Assert.Contains("exceeds", initiator.Connection.CloseReason, StringComparison.Ordinal);
    }

    [Fact]
    public void PduReader_SeededRandomInput_OnlyProtocolViolationsEscape()
    {
        var random = new Random(20261124);
        var settings = new FramingSettings(true, true, 65536, 512);
        var scratch = new byte[48];
        for (var round = 0; round < 5000; round++)
        {
            var bytes = new byte[random.Next(0, 400)];
            random.NextBytes(bytes);
            if (bytes.Length > 8 && random.Next(2) == 0)
            {
                // Keep lengths plausible half the time so digests and padding are reached.
                bytes[4] = (byte)random.Next(0, 3);
                bytes[5] = 0;
                bytes[6] = 0;
                bytes[7] = (byte)random.Next(0, 200);
            }

            try
            {
                PduReader.TryReadPdu(new ReadOnlySequence<byte>(bytes), settings, scratch, out _, out _);
            }
            catch (IscsiProtocolException)
            {
                // The protocol-violation path is the only one allowed.
            }
        }
    }

    [Fact]
    public async Task Connection_SeededRandomPdusAfterLogin_EndsWithoutUnexpectedException()
    {
        var random = new Random(42);
        for (var round = 0; round < 40; round++)
        {
            await using var initiator = new TestInitiator(Catalogs.Create(out _));
            await initiator.LoginAsync(Catalogs.Target);
            for (var i = 0; i < 20; i++)
            {
                var bhs = new byte[48];
                random.NextBytes(bhs);
                bhs[0] = (byte)(random.Next(0, 8) | (random.Next(2) << 6));
                bhs[4] = (byte)random.Next(0, 2);
                bhs[5] = 0;
                bhs[6] = 0;
                bhs[7] = (byte)random.Next(0, 64);
                var rest = new byte[(bhs[4] * 4) + BasicHeaderSegment.PaddedLength(bhs[7])];
                random.NextBytes(rest);
                await initiator.SendRawAsync([.. bhs, .. rest]);
            }

            await initiator.Output.CompleteAsync();

            // Drain replies until the target closes; RunAsync must not fault.
            while (await initiator.ReceiveAsync() is not null)
            {
            }

            await initiator.Running;
        }
    }
}
