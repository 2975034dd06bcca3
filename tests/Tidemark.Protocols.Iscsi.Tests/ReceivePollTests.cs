using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// The transport's receive poll stops for a session whose every unit answers in network round trips
/// (PreferredConcurrency above 1, RADOS-backed volumes; IConnectionPhase.StopReceivePoll) and stays when
/// any unit is on a local store, whose 4K answers at queue depth 1 it speeds up.
/// </summary>
public sealed class ReceivePollTests
{
    private const int DeviceBytes = 1024 * 1024;

    [Theory]
    [InlineData(new[] { 32 }, 1)]
    [InlineData(new[] { 32, 8 }, 1)]
    [InlineData(new[] { 1 }, 0)]
    [InlineData(new[] { 32, 1 }, 0)] // one local unit keeps it
    public async Task TheReceivePoll_StopsOnlyWhenEveryUnitAnswersInRoundTrips(int[] preferredConcurrency, int expectedStops)
    {
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(
            Catalogs.Target,
            [.. preferredConcurrency.Select((preferred, lun) => new IscsiLunDefinition(lun, new ConcurrencyDevice(new MemoryBlockDevice(DeviceBytes), preferred)))]));
        var phase = new RecordingPhase();
        await using var initiator = new TestInitiator(catalog, phase: phase);
        var (login, _) = await initiator.LoginAsync(Catalogs.Target);
        Assert.Equal(LoginStatus.Success, login.Status);

        // A READ answered after the login: the connection is in its data phase and told its transport.
        var reply = await initiator.CommandAsync(PiecesSession.Cdb16(ScsiOpcode.Read16, 0, 1), 512, read: true, write: false);

        Assert.True(DataInPdu.TryRead(reply.Header, out var dataIn));
        Assert.True(dataIn.HasStatus);
        Assert.Equal(1, phase.Entered);
        Assert.Equal(expectedStops, phase.PollStops);
    }
}
