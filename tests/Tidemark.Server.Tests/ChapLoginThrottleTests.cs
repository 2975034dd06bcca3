using System.Net;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Failed iSCSI CHAP logins are logged at the default level (rate-limited) and slow down the
/// failing address's next connections (issue 17: 500 wrong secrets in 0.6 s, no log line, no delay).
/// </summary>
public sealed class ChapLoginThrottleTests
{
    [Fact]
    public void Delay_DoublesPerFailure_IsCapped_AndIsForgottenAfterQuietTime()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        var throttle = new ChapLoginThrottle("iSCSI", NullLogger.Instance, time);
        var attacker = IPAddress.Parse("192.0.2.7");
        var other = IPAddress.Parse("192.0.2.8");

        var before = throttle.DelayFor(attacker);
        var delays = new List<TimeSpan>();
        for (var i = 0; i < 10; i++)
        {
            throttle.Failed(attacker, null, "iqn.x", "iqn.y", "wrong secret");
            delays.Add(throttle.DelayFor(attacker));
        }

        var bystander = throttle.DelayFor(other);
        time.Advance(ChapLoginThrottle.ForgetAfter + TimeSpan.FromSeconds(1));
        var forgotten = throttle.DelayFor(attacker);

        Assert.Equal(TimeSpan.Zero, before);
        Assert.Equal(TimeSpan.FromMilliseconds(250), delays[0]);
        Assert.Equal(TimeSpan.FromMilliseconds(500), delays[1]);
        Assert.Equal(TimeSpan.FromSeconds(1), delays[2]);
        Assert.Equal(ChapLoginThrottle.MaxDelay, delays[^1]);
        Assert.Equal(TimeSpan.Zero, bystander);
        Assert.Equal(TimeSpan.Zero, forgotten);
        Assert.Equal(10, throttle.Failures);
    }

    [Fact]
    public async Task WrongChapSecrets_AreLoggedAndCounted_AndTheAddressIsSlowedDown()
    {
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "iscsi", Iqn: "iqn.2026-11.dev.tidemark:mailstore", ChapUser: "alice", ChapSecret: "alice-secret-12"));
        var address = $"{server.Iscsi}/iqn.2026-11.dev.tidemark:mailstore/0";

        const int attempts = 4;
        for (var i = 0; i < attempts; i++)
        {
            var wrong = await ProcessRunner.RunAsync("iscsi-inq", $"iscsi://alice%wrong-secret-{i:D2}x@{address}");
            Assert.NotEqual(0, wrong.ExitCode);
        }

        var right = await ProcessRunner.RunAsync("iscsi-inq", $"iscsi://alice%alice-secret-12@{address}");
        using var http = new HttpClient { BaseAddress = server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", server.Token);
        var metrics = PrometheusExposition.Parse(await http.GetStringAsync("metrics")).Samples
            .Where(s => s.Key.StartsWith("tidemark_listener_login", StringComparison.Ordinal))
            .ToDictionary();
        var logged = server.Log.Split('\n').Count(l => l.Contains("iSCSI login from 127.0.0.1", StringComparison.Ordinal));

        right.AssertSuccess(); // slowed down, not locked out
        var failures = metrics["tidemark_listener_login_failures_total{protocol=\"iscsi\"}"];
        Assert.True(failures >= attempts, $"{failures} failed logins counted");

        // Every connection after the first failure waited (the right one included).
        Assert.True(metrics["tidemark_listener_login_throttled_total{protocol=\"iscsi\"}"] >= attempts, string.Join('\n', metrics));
        Assert.InRange(logged, 1, (int)failures);
        Assert.Contains("target iqn.2026-11.dev.tidemark:mailstore", server.Log, StringComparison.Ordinal);
    }
}
