using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Tidemark.Agent;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// The mail plugin's Postfix hold against Debian's Postfix, delivering over LMTP to a server of the
/// test's own that holds its reply to the first message (ADR 0015): the hold stops the queue manager
/// at once, waits for the delivery already in flight to finish (and not a moment less), keeps
/// accepting mail over SMTP without delivering it, never touches main.cf, and the release lets the
/// queue manager deliver what waited. What it reads of Postfix's settings is kept between holds.
/// </summary>
public sealed class PostfixHoldTests
{
    private static readonly TimeSpan _wait = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Hold_StopsQmgr_WaitsForTheDeliveryInFlight_AcceptsButHoldsNewMail_ReleaseDeliversIt()
    {
        PostfixInstance.Require();
        using var temp = new TempDirectory();
        await using var lmtp = SlowLmtpServer.Start();
        await using var postfix = await PostfixInstance.StartAsync(temp.CreateDirectory("pf"), lmtp.Port);
        var log = new StepLog();
        var mainCf = await File.ReadAllBytesAsync(Path.Combine(postfix.ConfigDirectory, "main.cf"));
        PostfixSettings.Forget(postfix.ConfigDirectory);

        await postfix.SendAsync("sender@example.org", "alice@example.test", "Subject: in flight\n\nfirst\n");
        await lmtp.FirstDataReceived.Task.WaitAsync(_wait);
        var holding = PostfixHold.HoldAsync(postfix.ConfigDirectory, null, log, CancellationToken.None);
        var stopped = await WaitForAsync(() => postfix.QueueManagerState() == ProcStat.Stopped);
        await Task.Delay(TimeSpan.FromSeconds(1));
        var heldBeforeTheReply = !holding.IsCompleted;
        lmtp.Finish();
        var hold = await holding.WaitAsync(_wait);
        var deliveredAtHold = lmtp.Delivered;

        // While held: accepted over SMTP (a stopped qmgr hands out no in_flow_delay tokens: up to 1 s), not delivered.
        await postfix.SendAsync("sender@example.org", "bob@example.test", "Subject: held\n\nsecond\n");
        await Task.Delay(TimeSpan.FromSeconds(2));
        var deliveredWhileHeld = lmtp.Delivered;
        var stateWhileHeld = postfix.QueueManagerState();
        var mainCfWhileHeld = await File.ReadAllBytesAsync(Path.Combine(postfix.ConfigDirectory, "main.cf"));
        await hold.ReleaseAsync();
        var stateAfter = postfix.QueueManagerState();
        var deliveredAfter = await WaitForAsync(() => lmtp.Delivered == 2);

        var idle = Stopwatch.StartNew();
        var second = await PostfixHold.HoldAsync(postfix.ConfigDirectory, null, log, CancellationToken.None);
        idle.Stop();
        await second.ReleaseAsync();

        Assert.True(stopped, "the queue manager was not stopped (state T)");
        Assert.True(heldBeforeTheReply, "the hold returned while the LMTP delivery was still waiting for its reply");
        Assert.Equal(1, deliveredAtHold);
        Assert.Contains(log.Steps, s => s.StartsWith("lmtp (pid ", StringComparison.Ordinal) && s.Contains("finished its delivery", StringComparison.Ordinal));
        Assert.Equal(1, deliveredWhileHeld);
        Assert.Equal(ProcStat.Stopped, stateWhileHeld);
        Assert.Equal(mainCf, mainCfWhileHeld);
        Assert.NotEqual(ProcStat.Stopped, stateAfter);
        Assert.True(deliveredAfter, $"{lmtp.Delivered} of 2 messages delivered after the release; queue:\n{await postfix.QueueAsync()}");
        Assert.Equal(["settings (postconf)", "settings (unchanged)"], log.Steps.Where(s => s.StartsWith("settings", StringComparison.Ordinal)));
        Assert.True(idle.Elapsed < TimeSpan.FromSeconds(2), $"an idle Postfix held in {idle.Elapsed.TotalSeconds:0.00} s");
        Assert.Equal(mainCf, await File.ReadAllBytesAsync(Path.Combine(postfix.ConfigDirectory, "main.cf")));
    }

    private static async Task<bool> WaitForAsync(Func<bool> condition)
    {
        var waited = Stopwatch.StartNew();
        while (!condition())
        {
            if (waited.Elapsed > _wait)
            {
                return false;
            }

            await Task.Delay(20);
        }

        return true;
    }

    /// <summary>Keeps the hold's step names (debug event 9026) and the delivery agents it waited for (9028), in order.</summary>
    private sealed class StepLog : ILogger
    {
        private readonly List<string> _steps = [];

        public IReadOnlyList<string> Steps
        {
            get
            {
                lock (_steps)
                {
                    return [.. _steps];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id is 9026 or 9028 && state is IReadOnlyList<KeyValuePair<string, object?>> fields)
            {
                var step = eventId.Id == 9026
                    ? fields.FirstOrDefault(f => f.Key == "Step").Value as string
                    : $"{fields.FirstOrDefault(f => f.Key == "Command").Value} (pid {fields.FirstOrDefault(f => f.Key == "Pid").Value}) finished its delivery";
                lock (_steps)
                {
                    _steps.Add(step ?? "");
                }
            }
        }
    }
}
