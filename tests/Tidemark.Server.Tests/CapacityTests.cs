using System.Net;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Capacity on demand against a real server: the pool's store and a volume grow by policy; a full pool is an event.</summary>
public sealed class CapacityTests : ServerTest
{
    private const long M = 1 << 20;

    public override async Task InitializeAsync() =>
        Server = await ServerProcess.StartAsync(Data, "--store-capacity", "64M");

    [Fact]
    public async Task Volume_PastThreshold_GrowsByStepUpToMax_AndInitiatorsSeeNewSize()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 32 * M));
        var iscsi = await client.CreateExportAsync(new CreateExportRequest("mail", "mail-iscsi", "iscsi"));
        var nbd = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        await client.SetVolumeAutogrowAsync("mail", new AutoGrowDto(50, 16 * M, 56 * M));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5a 0 12M", nbd.Url!)).AssertSuccess();

        await client.CheckCapacityAsync();
        var below = await client.GetVolumeAsync("mail");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5b 12M 8M", nbd.Url!)).AssertSuccess();
        await client.CheckCapacityAsync();
        var grown = await client.GetVolumeAsync("mail");
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x5c 20M 20M", nbd.Url!)).AssertSuccess();
        await client.CheckCapacityAsync();
        var capped = await client.GetVolumeAsync("mail");
        await client.CheckCapacityAsync();
        var readCapacity = (await ProcessRunner.RunAsync("iscsi-readcapacity16", iscsi.Luns![0].Url!)).AssertSuccess().StandardOutput;
        var events = await client.ListEventsAsync(kind: "volume.grow");

        Assert.Equal(32 * M, below.SizeBytes);
        Assert.Equal(12 * M, below.AllocatedBytes);
        Assert.Equal(48 * M, grown.SizeBytes);
        Assert.Equal(56 * M, capped.SizeBytes); // the step is cut at the maximum, and it stops there
        Assert.Equal(40 * M, capped.AllocatedBytes);
        Assert.Contains($"LOGICALBLOCKADDRESS:{(56 * M / 512) - 1}\n", readCapacity.Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant(), StringComparison.Ordinal);
        Assert.Equal(2, events.Count);
        Assert.All(events, e => Assert.Equal("server", e.Actor));
        Assert.Contains(events, e => e.Message.EndsWith("grew from 32M to 48M", StringComparison.Ordinal));
        Assert.Contains(events, e => e.Message.EndsWith("grew from 48M to 56M", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Pool_PastThreshold_GrowsStore_ThenAtMaxAFullPoolIsAnEventAndAClearWriteError()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("big", 256 * M));
        var nbd = await client.CreateExportAsync(new CreateExportRequest("big", "big", "nbd"));
        await client.SetPoolAutogrowAsync(new AutoGrowDto(50, 32 * M, 96 * M));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x11 0 40M", nbd.Url!)).AssertSuccess();

        await client.CheckCapacityAsync();
        var grown = await client.GetPoolAsync();
        var overflow = await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 0x22 40M 80M", nbd.Url!);
        await client.CheckCapacityAsync();
        await client.CheckCapacityAsync();
        var atMax = await client.GetPoolAsync();
        var events = await client.ListEventsAsync(kind: "pool");
        var verify = await client.VerifyAsync();
        var firstData = (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "read -P 0x11 0 40M", nbd.Url!)).AssertSuccess();

        Assert.Equal(96 * M, grown.Stores.Single().CapacityBytes);
        Assert.Contains("No space", overflow.StandardOutput + overflow.StandardError, StringComparison.Ordinal);
        Assert.Equal(96 * M, atMax.Stores.Single().CapacityBytes);
        Assert.Equal(["pool.autogrow", "pool.grow"], events.Take(2).Select(e => e.Kind));
        Assert.Equal("ok", events[1].Outcome);
        Assert.Single(events, e => e.Kind == "pool.full");
        Assert.Contains(events, e => e.Kind == "pool.grow" && e.Outcome == "failed" && e.Message.Contains("maximum", StringComparison.Ordinal));
        Assert.True(verify.Clean, string.Join("; ", verify.Problems));
    }

    [Fact]
    public async Task Policies_SurviveRestart_AndBadInputIsRefusedWithoutChange()
    {
        using (var client = Server.Client())
        {
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 32 * M));
            await client.SetVolumeAutogrowAsync("db", new AutoGrowDto(80, 8 * M, 128 * M));
            await client.SetPoolAutogrowAsync(new AutoGrowDto(90, 64 * M, 1024 * M));

            var zero = await Assert.ThrowsAsync<TidemarkApiException>(() => client.SetVolumeAutogrowAsync("db", new AutoGrowDto(0, 8 * M, 128 * M)));
            var small = await Assert.ThrowsAsync<TidemarkApiException>(() => client.SetVolumeAutogrowAsync("db", new AutoGrowDto(80, 8 * M, 16 * M)));
            var unknown = await Assert.ThrowsAsync<TidemarkApiException>(() => client.SetVolumeAutogrowAsync("nope", new AutoGrowDto(80, 8 * M, 128 * M)));
            var misaligned = await Assert.ThrowsAsync<TidemarkApiException>(() => client.SetVolumeAutogrowAsync("db", new AutoGrowDto(80, 1000, 128 * M)));
            Assert.Equal(HttpStatusCode.BadRequest, zero.Status);
            Assert.Contains("between 1 and 99", zero.Message, StringComparison.Ordinal);
            Assert.Equal(HttpStatusCode.BadRequest, small.Status);
            Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
            Assert.Equal("misaligned", misaligned.Code);
        }

        var noMax = await CliProcess.RunAsync("volume", "autogrow", "db", "--threshold", "70", "--data", Server.DataDirectory);
        var badStep = await CliProcess.RunAsync("pool", "autogrow", "--step", "lots", "--max", "2G", "--data", Server.DataDirectory);
        Assert.Equal(2, noMax.ExitCode);
        Assert.Contains("--max is required", noMax.StandardError, StringComparison.Ordinal);
        Assert.Equal(2, badStep.ExitCode);

        await Server.KillAsync();
        await Server.DisposeAsync();
        Server = await ServerProcess.StartAsync(Data);
        using var again = Server.Client();
        var policies = await again.GetCapacityPoliciesAsync();
        var shown = (await CliProcess.RunAsync("volume", "autogrow", "db", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;

        Assert.Equal(new AutoGrowDto(80, 8 * M, 128 * M), policies.Volumes["db"]);
        Assert.Equal(new AutoGrowDto(90, 64 * M, 1024 * M), policies.Pool);
        Assert.Contains("80%", shown, StringComparison.Ordinal);

        await again.DeleteVolumeAsync("db");
        Assert.Empty((await again.GetCapacityPoliciesAsync()).Volumes);
    }
}
