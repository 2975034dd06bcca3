using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;
using Tidemark.Server.WebConsole;

namespace Tidemark.Console.Tests;

public sealed class ConsoleSessionsTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 6, 10, 0, 0, TimeSpan.Zero));
    private readonly Pool _pool;
    private readonly TokenStore _tokens;
    private readonly ConsoleSessions _sessions;

    public ConsoleSessionsTests()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });
        _tokens = TokenStore.Open(_pool.Control, _temp.Combine("tokens.json"), "first-secret", _time, NullLogger.Instance);
        _sessions = new ConsoleSessions(_tokens, _time);
    }

    public void Dispose()
    {
        _pool.Dispose();
        _temp.Dispose();
    }

    [Fact]
    public void A_session_acts_as_its_token_until_the_token_is_revoked_or_replaced()
    {
        var alice = _tokens.Create("alice", TokenRoles.Operator);
        var session = _sessions.Create(_tokens.Find(alice.Secret)!);
        Assert.Equal("alice", _sessions.Find(session.Id)!.Value.Token.Name);

        _tokens.Revoke("alice");
        Assert.Null(_sessions.Find(session.Id));

        // A new token under the same name is a different person's secret: the old session stays ended.
        var again = _tokens.Create("alice", TokenRoles.Admin);
        var old = _sessions.Create(_tokens.Find(again.Secret)!);
        _tokens.Revoke("alice");
        _time.Advance(TimeSpan.FromSeconds(1));
        _tokens.Create("alice", TokenRoles.Admin);
        Assert.Null(_sessions.Find(old.Id));
    }

    [Fact]
    public void A_session_ends_when_idle_for_an_hour_and_twelve_hours_after_sign_in()
    {
        var admin = _tokens.Find("first-secret")!;
        var idle = _sessions.Create(admin);
        _time.Advance(ConsoleSessions.IdleTimeout + TimeSpan.FromSeconds(1));
        Assert.Null(_sessions.Find(idle.Id));

        var busy = _sessions.Create(admin);
        for (var elapsed = TimeSpan.Zero; elapsed < ConsoleSessions.MaxAge - TimeSpan.FromMinutes(30); elapsed += TimeSpan.FromMinutes(30))
        {
            _time.Advance(TimeSpan.FromMinutes(30));
            Assert.NotNull(_sessions.Find(busy.Id));
        }

        _time.Advance(TimeSpan.FromMinutes(31));
        Assert.Null(_sessions.Find(busy.Id));
    }

    [Fact]
    public void Csrf_token_must_match_exactly()
    {
        var session = _sessions.Create(_tokens.Find("first-secret")!);
        Assert.True(ConsoleSessions.CsrfMatches(session, session.Csrf));
        Assert.False(ConsoleSessions.CsrfMatches(session, null));
        Assert.False(ConsoleSessions.CsrfMatches(session, ""));
        Assert.False(ConsoleSessions.CsrfMatches(session, session.Csrf[..^1]));
        Assert.False(ConsoleSessions.CsrfMatches(session, session.Id));
    }

    [Fact]
    public void Capacity_history_is_kept_in_the_pool_and_bounded()
    {
        var history = new CapacityHistory(_pool, _time, NullLogger<CapacityHistory>.Instance);
        for (var i = 0; i < CapacityHistory.MaxSamples + 5; i++)
        {
            history.Sample();
            _time.Advance(TimeSpan.FromMinutes(5));
        }

        Assert.Equal(CapacityHistory.MaxSamples, history.Samples.Count);
        Assert.Equal(CapacityHistory.MaxSamples, _pool.Control.List(CapacityHistory.Kind).Count);
        var reopened = new CapacityHistory(_pool, _time, NullLogger<CapacityHistory>.Instance);
        Assert.Equal(history.Samples, reopened.Samples);
        Assert.True(reopened.Samples[0].Time < reopened.Samples[^1].Time);
        Assert.Equal(_pool.GetInfo().CapacityBytes, reopened.Samples[^1].CapacityBytes);
    }

    [Fact]
    public void Recent_events_are_the_newest_of_the_main_log_and_follow_new_ones()
    {
        using var log = new Tidemark.Server.Events.EventLog(_temp.Combine("events.jsonl"), _time, NullLogger.Instance);
        for (var i = 0; i < 150; i++)
        {
            log.Record("volume.create", $"v{i}", "alice", "created");
        }

        log.RecordRefused("auth.failed", null, "anonymous", "refused");
        Assert.Equal(log.Query(limit: 15, log: Tidemark.Server.Events.EventLog.MainLog), log.Recent(15));
        log.Record("volume.delete", "v0", "bob", "deleted");
        var recent = log.Recent(15);
        Assert.Equal("volume.delete", recent[^1].Kind);
        Assert.Equal(log.Query(limit: 15, log: Tidemark.Server.Events.EventLog.MainLog), recent);
        Assert.Equal(Tidemark.Server.Events.EventLog.RecentCapacity, log.Recent(1000).Count);
    }

    [Fact]
    public void Capacity_sample_record_format_is_stable()
    {
        // Golden: a change to this layout needs a new version of the kind (ADR 0011).
        var sample = new CapacitySample(new DateTimeOffset(2026, 12, 6, 11, 0, 0, TimeSpan.Zero), 1L << 30, 1L << 20, 3, 7);
        var json = System.Text.Encoding.UTF8.GetString(CapacityHistory.Kind.Encode(sample).AsSpan(8));
        Assert.Equal("""{"time":"2026-12-06T11:00:00+00:00","capacityBytes":1073741824,"usedBytes":1048576,"volumes":3,"snapshots":7}""", json);
        Assert.Equal(sample, CapacityHistory.Kind.Decode(CapacityHistory.Kind.Encode(sample), "x"));
        Assert.Equal("capacity-sample", CapacityHistory.Kind.Name);
        Assert.Equal(1, CapacityHistory.Kind.Version);
    }

    [Fact]
    public void Find_without_touch_does_not_keep_an_idle_session_alive()
    {
        var session = _sessions.Create(_tokens.Find("first-secret")!);
        for (var elapsed = TimeSpan.Zero; elapsed < ConsoleSessions.IdleTimeout; elapsed += TimeSpan.FromMinutes(10))
        {
            _time.Advance(TimeSpan.FromMinutes(10));
            Assert.True(_sessions.IsLive(session.Id));
            Assert.NotNull(_sessions.Find(session.Id, touch: false)); // a live reload: seen, not used
        }

        _time.Advance(TimeSpan.FromMinutes(1));
        Assert.False(_sessions.IsLive(session.Id));
        Assert.Null(_sessions.Find(session.Id, touch: false));
    }
}
