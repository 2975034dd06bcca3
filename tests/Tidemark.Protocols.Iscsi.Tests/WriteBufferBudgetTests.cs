using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// What one connection may hold for WRITEs waiting for their data is bounded by the write budget
/// (issue 17: 64 WRITEs of 8 MiB held 512 MiB per connection) and all of it is returned when the
/// connection ends; commands beyond the budget still complete, in order, as the budget frees up.
/// </summary>
public sealed class WriteBufferBudgetTests
{
    private const int CommandBytes = 8 << 20;

    private static byte[] Write10(uint lba, ushort blocks) =>
        [ScsiOpcode.Write10, 0, (byte)(lba >> 24), (byte)(lba >> 16), (byte)(lba >> 8), (byte)lba, 0, (byte)(blocks >> 8), (byte)blocks, 0];

    [Fact]
    public async Task SixtyFourLargeWritesWithoutData_HoldOnlyTheBudget_AndNothingAfterDisconnect()
    {
        var limits = new IscsiLimits { MaxBufferedWriteBytes = 16 << 20 };
        var initiator = new TestInitiator(Catalogs.Create(out _), limits);
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        for (uint i = 0; i < 64; i++)
        {
            var bhs = new byte[BasicHeaderSegment.LengthBytes];
            new ScsiCommandPdu(false, true, false, true, 1, 0, 0, 0x100 + i, CommandBytes, initiator.CmdSN++, initiator.ExpStatSN)
                .WriteTo(bhs, Write10(0, CommandBytes / 512));
            await initiator.SendAsync(bhs);
        }

        // R2Ts come for the first sixteen commands only: each is written in pieces and holds one
        // piece of 1 MiB (IscsiLimits.WritePieceBytes), and 16 pieces fill the 16 MiB budget.
        var solicited = new HashSet<uint>();
        while (await TryReceiveAsync(initiator, TimeSpan.FromMilliseconds(500)) is { } pdu)
        {
            Assert.True(ReadyToTransferPdu.TryRead(pdu.Header, out var r2t));
            solicited.Add(r2t.InitiatorTaskTag);
        }

        var held = initiator.Connection.BufferedWriteBytes;
        await initiator.DisposeAsync();

        Assert.Equal(Enumerable.Range(0x100, 16).Select(i => (uint)i), solicited.Order());
        Assert.InRange(held, 16L << 20, (16L << 20) + (64 * 1024));
        Assert.Equal(0, initiator.Connection.BufferedWriteBytes);
    }

    [Fact]
    public async Task WritesBeyondTheBudget_GetTheirR2TsOnceEarlierOnesComplete()
    {
        var limits = new IscsiLimits { MaxBufferedWriteBytes = 8192 };
        await using var initiator = new TestInitiator(Catalogs.Create(out var device), limits);
        await initiator.LoginAsync(Catalogs.Target, ("InitialR2T", "Yes"), ("ImmediateData", "No"));
        var data = Enumerable.Range(0, 8192).Select(i => (byte)(i * 7)).ToArray();
        for (uint i = 0; i < 3; i++)
        {
            var bhs = new byte[BasicHeaderSegment.LengthBytes];
            new ScsiCommandPdu(false, true, false, true, 1, 0, 0, 0x200 + i, 8192, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(bhs, Write10(i * 16, 16));
            await initiator.SendAsync(bhs);
        }

        // Each command is solicited only after the one before it completed (one fits the budget).
        for (uint i = 0; i < 3; i++)
        {
            var reply = (await initiator.ReceiveAsync())!.Value;
            Assert.True(ReadyToTransferPdu.TryRead(reply.Header, out var r2t));
            Assert.Equal(0x200 + i, r2t.InitiatorTaskTag);
            Assert.Null(await TryReceiveAsync(initiator, TimeSpan.FromMilliseconds(200)));
            var bhs = new byte[BasicHeaderSegment.LengthBytes];
            new DataOutPdu(true, 8192, 0, r2t.InitiatorTaskTag, r2t.TargetTransferTag, initiator.ExpStatSN, 0, 0).WriteTo(bhs);
            await initiator.SendAsync(bhs, data);
            var status = (await initiator.ReceiveAsync())!.Value;
            Assert.True(ScsiResponsePdu.TryRead(status.Header, out var response));
            Assert.Equal(0, response.Status);
            Assert.Equal(0x200 + i, response.InitiatorTaskTag);
        }

        var stored = new byte[8192];
        device.Read(32 * 512, stored);
        Assert.Equal(data, stored);
    }

    /// <summary>The next PDU, or null when none arrives within <paramref name="quiet"/>.</summary>
    private static async Task<(byte[] Header, byte[] Data)?> TryReceiveAsync(TestInitiator initiator, TimeSpan quiet)
    {
        try
        {
            return await initiator.ReceiveAsync(quiet);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }
}
