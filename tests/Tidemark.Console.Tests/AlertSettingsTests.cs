using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Alerts;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Console.Tests;

public sealed class AlertSettingsTests : IDisposable
{
    private const long MiB = 1L << 20;

    private readonly TempDirectory _temp = new();
    private readonly Pool _pool;

    public AlertSettingsTests() => _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });

    public void Dispose()
    {
        _pool.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public void The_evaluator_applies_a_change_at_its_next_look_and_the_pool_keeps_it_over_the_config_defaults()
    {
        var defaults = AlertThresholds.Default with { StalledJob = TimeSpan.FromMinutes(5) };
        var settings = new AlertSettings(_pool, defaults);
        var evaluator = new AlertEvaluator(() => settings.Current, new FakeTimeProvider());
        var pool = new PoolDto(Guid.Empty, "/data", 1000 * MiB, 900 * MiB, 100 * MiB, [], 1, 0);
        Assert.Equal(new AlertThresholdsDto(85, "5m", "1h", "config"), settings.Get());
        Assert.Single(evaluator.Evaluate(pool, [], [], []));

        Assert.Equal(new AlertThresholdsDto(95, "5m", "90s", "api"), settings.Update(new UpdateAlertThresholdsRequest(PoolFullPercent: 95, Rpo: "90s")));
        Assert.Empty(evaluator.Evaluate(pool, [], [], []));

        // A refused request changes nothing, not even its valid parts.
        var refused = Assert.Throws<StorageException>(() => settings.Update(new UpdateAlertThresholdsRequest(PoolFullPercent: 50, StalledJob: "forever")));
        Assert.Equal(StorageError.InvalidArgument, refused.Error);
        Assert.Equal(0.95, settings.Current.NearlyFull);

        // Reopened with other defaults (an edited config file): the pool's values win.
        var reopened = new AlertSettings(_pool, AlertThresholds.Default);
        Assert.Equal(new AlertThresholdsDto(95, "5m", "90s", "api"), reopened.Get());
        Assert.Equal(TimeSpan.FromSeconds(90), reopened.Current.Rpo);
    }

    [Fact]
    public void Alert_thresholds_record_format_is_stable()
    {
        // Golden: a change to this layout needs a new version of the kind (ADR 0011).
        var record = new AlertThresholdsRecord(92.5, 600_000, 3_600_000);
        var json = System.Text.Encoding.UTF8.GetString(AlertSettings.Kind.Encode(record).AsSpan(8));
        Assert.Equal("""{"poolFullPercent":92.5,"stalledJobMilliseconds":600000,"rpoMilliseconds":3600000}""", json);
        Assert.Equal(record, AlertSettings.Kind.Decode(AlertSettings.Kind.Encode(record), "x"));
        Assert.Equal(("alert-thresholds", 1), (AlertSettings.Kind.Name, AlertSettings.Kind.Version));
    }

    [Fact]
    public void Config_file_thresholds_take_days_up_to_a_month_while_other_durations_keep_their_day()
    {
        var settings = new Tidemark.Server.ServerSettings { AlertRpo = "7d", AlertStalledJob = "36h" };
        settings.Validate();
        Assert.Equal((TimeSpan.FromDays(7), TimeSpan.FromHours(36)), (AlertThresholds.From(settings).Rpo, AlertThresholds.From(settings).StalledJob));
        Assert.Contains("alert-rpo '31d' is longer than 30d", Assert.Throws<ArgumentException>(() => (settings with { AlertRpo = "31d" }).Validate()).Message, StringComparison.Ordinal);
        Assert.Contains("replication-retry-delay '2d' is longer than 1d", Assert.Throws<ArgumentException>(() => (settings with { ReplicationRetryDelay = "2d" }).Validate()).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(7 * 86400, "7d")]
    [InlineData(90 * 60, "90m")]
    [InlineData(2 * 3600, "2h")]
    [InlineData(45, "45s")]
    [InlineData(1.5, "1500ms")]
    public void Spans_are_written_the_way_the_parser_reads_them(double seconds, string text)
    {
        Assert.Equal(text, AlertSettings.Text(TimeSpan.FromSeconds(seconds)));
        Assert.Equal(TimeSpan.FromSeconds(seconds), Tidemark.Server.ServerSettings.Duration(text, "x", AlertSettings.MaxSpan));
    }
}
