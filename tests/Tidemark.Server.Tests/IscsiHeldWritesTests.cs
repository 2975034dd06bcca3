using System.Globalization;
using System.Text.RegularExpressions;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Rounds of iSCSI connections that leave 64 WRITEs of 8 MiB waiting for data, run by
/// bench/flood/iscsi-held-writes.py against a real server (issue 17: RSS climbed from 223 MB to
/// 3.9 GB over such rounds). Each connection is solicited for at most the write budget, and RSS
/// does not grow from round to round. 3 rounds by default, 100 with TIDEMARK_LONG=1.
/// </summary>
public sealed partial class IscsiHeldWritesTests
{
    [Fact]
    public async Task RoundsOfHeldWrites_AreBoundedPerConnection_AndRssDoesNotClimb()
    {
        var rounds = Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 100 : 3;
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "iscsi"));

        var run = await ProcessRunner.RunAsync(
            TimeSpan.FromSeconds(60 + (rounds * 10)),
            "python3",
            Path.Combine(RepositoryRoot(), "bench", "flood", "iscsi-held-writes.py"),
            server.Pid.ToString(CultureInfo.InvariantCulture),
            server.Iscsi,
            export.Iqn!,
            rounds.ToString(CultureInfo.InvariantCulture),
            "2");
        run.AssertSuccess();
        var results = Round().Matches(run.StandardOutput).Select(m => (R2Ts: int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), Held: int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture), After: int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture))).ToList();

        Assert.Equal(rounds, results.Count);

        // 16 MiB budget per connection: a WRITE of 8 MiB is written in pieces and holds one piece of
        // 1 MiB (IscsiLimits.WritePieceBytes), so 16 commands are solicited per connection, each with
        // 8 R2Ts of 1 MiB; 2 connections.
        Assert.All(results, r => Assert.True(r.R2Ts <= 2 * 16 * 8, run.StandardOutput));
        Assert.True(results[^1].After - results[0].After < 96, run.StandardOutput);
        Assert.True(results.Max(r => r.Held) - results[0].Held < 128, run.StandardOutput);
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Tidemark.slnx")))
        {
            directory = directory.Parent;
        }

        return directory?.FullName ?? throw new InvalidOperationException("Tidemark.slnx not found above the test binaries");
    }

    [GeneratedRegex(@"round \d+: (\d+) R2Ts .*RSS while held (\d+) MiB, after disconnect (\d+) MiB")]
    private static partial Regex Round();
}
