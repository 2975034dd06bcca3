using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Agent;
using Tidemark.Protocols.Nbd;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// Log lines are source-generated ([LoggerMessage], issue 18): each has its event id and keeps its
/// values as named fields, so a log pipeline can filter on "event 8000" or on the field Endpoint
/// instead of parsing text. One line of each converted area: the listeners, the periodic services
/// and the agent.
/// </summary>
public sealed class StructuredLogTests
{
    [Fact]
    public async Task NbdListener_Start_LogsListeningWithEventIdAndEndpointField()
    {
        var log = new CapturingLogger<NbdListener>();
        var catalog = new NbdExportCatalog();
        await using var listener = new NbdListener(new IPEndPoint(IPAddress.Loopback, 0), null, catalog, NbdServerOptions.Default, log);
        await listener.StartAsync(CancellationToken.None);

        var line = Assert.Single(log.Lines, l => l.Id.Id == 8000);
        Assert.Equal(LogLevel.Information, line.Level);
        Assert.Equal("NBD", line.Field("Protocol"));
        Assert.Equal(listener.LocalEndpoint, line.Field("Endpoint"));
        Assert.Equal($"NBD listening on {listener.LocalEndpoint}", line.Message);
    }

    [Fact]
    public async Task PeriodicService_FailedTick_LogsWarningWithEventIdWorkIntervalAndException()
    {
        var time = new FakeTimeProvider();
        var log = new CapturingLogger<FailingService>();
        using var service = new FailingService(time, log, new IOException("disk gone"));
        await service.StartAsync(CancellationToken.None);
        await FirstTickAsync(time, service);
        await service.StopAsync(CancellationToken.None);

        var line = Assert.Single(log.Lines, l => l.Id.Id == 1011);
        Assert.Equal(LogLevel.Warning, line.Level);
        Assert.Equal("Test work", line.Field("Work"));
        Assert.Equal(TimeSpan.FromMinutes(1), line.Field("Interval"));
        Assert.IsType<IOException>(line.Exception);
        Assert.Equal("Test work failed; trying again in 00:01:00", line.Message);
    }

    [Fact]
    public async Task PeriodicService_UnexpectedError_LogsErrorWithEventIdAndStops()
    {
        var time = new FakeTimeProvider();
        var log = new CapturingLogger<FailingService>();
        using var service = new FailingService(time, log, new InvalidOperationException("bug"));
        await service.StartAsync(CancellationToken.None);
        await FirstTickAsync(time, service);
        time.Advance(TimeSpan.FromMinutes(1));
        await service.StopAsync(CancellationToken.None);

        var line = Assert.Single(log.Lines);
        Assert.Equal(1010, line.Id.Id);
        Assert.Equal(LogLevel.Error, line.Level);
        Assert.Equal("Test work", line.Field("Work"));
        Assert.IsType<InvalidOperationException>(line.Exception);
        Assert.Equal(1, service.Ticks); // stopped after the error: no second tick
    }

    [Fact]
    public async Task AgentJournalRecovery_SettledEntry_LogsWarningWithEventIdAndMessageField()
    {
        using var temp = new TempDirectory();
        var directory = temp.CreateDirectory("agent");
        var log = new CapturingLogger<StructuredLogTests>();
        var journal = new QuiesceJournal(directory, log);
        journal.Write("/nonexistent/frozen", QuiesceJournalEntry.Create(QuiesceJournalEntry.Freeze) with { MountPath = "/nonexistent/frozen", MountId = "99 7:9 /dev/loop9" });
        var config = new AgentConfig { Name = "db1" };

        var report = await JournalRecovery.RunAsync(journal, config, new ScriptPlugin(config, log, journal), log);

        Assert.True(Assert.Single(report).Settled);
        var line = Assert.Single(log.Lines, l => l.Id.Id == 9030);
        Assert.Equal(LogLevel.Warning, line.Level);
        Assert.Equal(report[0].Message, line.Field("Message"));
        Assert.Equal($"Recovered from a previous run: {report[0].Message}", line.Message);
    }

    // ExecuteAsync (which creates the service's timer) runs on the thread pool since .NET 10: advance
    // the fake clock until the first tick has run.
    private static async Task FirstTickAsync(FakeTimeProvider time, FailingService service)
    {
        for (var i = 0; i < 1000 && service.Ticks == 0; i++)
        {
            time.Advance(TimeSpan.FromMinutes(1));
            await Task.Delay(10);
        }

        Assert.Equal(1, service.Ticks);
    }

    private sealed class FailingService(TimeProvider time, ILogger logger, Exception failure) : PeriodicService(time, logger)
    {
        private int _ticks;

        public int Ticks => Volatile.Read(ref _ticks);

        protected override TimeSpan Interval => TimeSpan.FromMinutes(1);

        protected override string WorkName => "Test work";

        protected override void Tick()
        {
            Interlocked.Increment(ref _ticks);
            throw failure;
        }
    }

    /// <summary>Keeps every line with its event id and named fields (what a structured sink sees).</summary>
    private sealed class CapturingLogger<T> : ILogger<T>
    {
        private readonly ConcurrentQueue<Line> _lines = new();

        public IReadOnlyList<Line> Lines => [.. _lines];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var fields = state as IReadOnlyList<KeyValuePair<string, object?>> ?? [];
            _lines.Enqueue(new Line(logLevel, eventId, formatter(state, exception), exception, fields.ToDictionary(f => f.Key, f => f.Value)));
        }
    }

    private sealed record Line(LogLevel Level, EventId Id, string Message, Exception? Exception, Dictionary<string, object?> Fields)
    {
        public object? Field(string name) => Fields.TryGetValue(name, out var value) ? value : throw new Xunit.Sdk.XunitException($"no field {name} in '{Message}' (fields: {string.Join(", ", Fields.Keys)})");
    }
}
