using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Server.Events;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The audit log's hash chain: intact across rotation and crashes, broken where a record was edited or removed.</summary>
public sealed class EventChainTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new();

    private string PathOf => _temp.Combine("events.jsonl");

    private string RotatedPath => _temp.Combine("events.1.jsonl");

    public void Dispose() => _temp.Dispose();

    private EventLog Open(long maxFileBytes = EventLog.DefaultMaxFileBytes) => new(PathOf, _time, NullLogger.Instance, maxFileBytes);

    [Fact]
    public void Verify_AcrossRotationAndReopen_IsIntact()
    {
        using (var log = Open(maxFileBytes: 4096))
        {
            for (var i = 0; i < 120; i++)
            {
                log.Record("volume.resize", "v", "admin", $"step {i}");
            }
        }

        using var again = Open(maxFileBytes: 4096);
        again.Record("server.start", null, "server", "again");

        var result = again.Verify();

        // The chain runs through every generation kept, oldest (events.3.jsonl) first.
        Assert.True(File.Exists(RotatedPath));
        Assert.True(File.Exists(_temp.Combine($"events.{EventLog.MainGenerations - 1}.jsonl")));
        Assert.True(result.Ok, string.Join("; ", result.Problems.Select(p => p.Problem)));
        Assert.Equal(121, result.LastSequence);
        Assert.True(result.FirstSequence > 1, "rotation dropped the oldest records");
        Assert.Equal(121 - result.FirstSequence + 1, result.Checked);
        Assert.NotNull(again.Query(limit: 1)[0].Prev);
    }

    [Fact]
    public void Verify_EditedRecord_SaysWhereItBreaks()
    {
        using var log = Open();
        log.Record("volume.create", "mail", "admin", "created");
        log.Record("volume.delete", "mail", "mallory", "deleted");
        log.Record("snapshot.create", "db@a", "admin", "created");
        var lines = File.ReadAllLines(PathOf);
        lines[1] = lines[1].Replace("mallory", "alice", StringComparison.Ordinal);
        File.WriteAllLines(PathOf, lines);

        var result = log.Verify();

        Assert.False(result.Ok);
        var problem = Assert.Single(result.Problems);
        Assert.Equal(3, problem.Sequence);
        Assert.Equal(3, problem.Line);
        Assert.Equal("events.jsonl", problem.File);
        Assert.Equal(EventLog.MainLog, problem.Log);
        Assert.Contains("does not link to record 2", problem.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_EditedRefusedRecord_NamesTheRefusedLog_AndLeavesTheMainChainIntact()
    {
        using var log = Open();
        log.Record("volume.create", "mail", "admin", "created");
        log.RecordRefused("auth.failed", null, "anonymous", "3 request(s) from 192.0.2.7");
        log.RecordRefused("auth.failed", null, "anonymous", "5 request(s) from 192.0.2.8");
        log.RecordRefused("auth.failed", null, "anonymous", "2 request(s) from 192.0.2.9");
        var refusedPath = _temp.Combine("events-refused.jsonl");
        var lines = File.ReadAllLines(refusedPath);
        lines[1] = lines[1].Replace("192.0.2.8", "192.0.2.1", StringComparison.Ordinal);
        File.WriteAllLines(refusedPath, lines);

        var result = log.Verify();

        Assert.False(result.Ok);
        var problem = Assert.Single(result.Problems);
        Assert.Equal(EventLog.RefusedLog, problem.Log);
        Assert.Equal("events-refused.jsonl", problem.File);
        Assert.Equal(3, problem.Sequence);
        Assert.Equal(1, result.Checked);
        Assert.False(result.Refused!.Ok);
        Assert.Equal(3, result.Refused.Checked);
    }

    [Fact]
    public void Verify_RemovedRecordOrCutEnd_IsFound()
    {
        using var log = Open();
        for (var i = 0; i < 5; i++)
        {
            log.Record("volume.resize", "v", "admin", $"step {i}");
        }

        var lines = File.ReadAllLines(PathOf).ToList();
        lines.RemoveAt(2);
        lines.RemoveAt(lines.Count - 1);
        File.WriteAllLines(PathOf, lines);

        var result = log.Verify();

        Assert.Equal(2, result.Problems.Count);
        Assert.Equal(4, result.Problems[0].Sequence);
        Assert.Contains("the end of the log was changed or removed", result.Problems[1].Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_LineTornByACrash_DoesNotBreakTheChain()
    {
        using (var log = Open())
        {
            log.Record("volume.create", "mail", "admin", "created");
        }

        File.AppendAllText(PathOf, "{\"sequence\":2,\"time\":\"2026-", Encoding.UTF8);
        using var again = Open();
        again.Record("server.start", null, "server", "after the crash");

        var result = again.Verify();

        Assert.True(result.Ok, string.Join("; ", result.Problems.Select(p => p.Problem)));
        Assert.Equal(2, result.Checked);
    }
}
