using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Tidemark.Agent;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// The mail plugin's Postfix hold against Debian's Postfix, without a mail store: what it reads once
/// and keeps between snapshots, and main.cf's modification time after each edit (Postfix pauses
/// 300 ms at a time, at the reload and in every daemon it starts, while main.cf is under a second
/// old: 1.5-2 s per reload under bench/agent/mail-pause.sh, twice per snapshot).
/// </summary>
public sealed class PostfixHoldTests
{
    [Fact]
    public async Task Hold_SettingsKeptUntilMainCfChanges_MainCfCooledAfterEachEdit_ReleaseRestoresWhatWasSet()
    {
        PostfixInstance.Require();
        using var temp = new TempDirectory();
        await using var postfix = await PostfixInstance.StartAsync(temp.CreateDirectory("pf"), FreePort.Find());
        var log = new StepLog();
        var mainCf = Path.Combine(postfix.ConfigDirectory, "main.cf");
        PostfixSettings.Forget(postfix.ConfigDirectory);

        var first = await PostfixHold.HoldAsync(postfix.ConfigDirectory, null, log, CancellationToken.None);
        var heldFirst = await PostconfAsync(postfix, "-h", "defer_transports");
        var ageAfterHold = DateTime.UtcNow - File.GetLastWriteTimeUtc(mainCf);
        await first.ReleaseAsync();
        var ageAfterRelease = DateTime.UtcNow - File.GetLastWriteTimeUtc(mainCf);
        var afterFirst = await PostconfAsync(postfix, "-n", "defer_transports");

        var unchanged = Stopwatch.StartNew();
        var second = await PostfixHold.HoldAsync(postfix.ConfigDirectory, null, log, CancellationToken.None);
        unchanged.Stop();
        await second.ReleaseAsync();

        // Someone sets defer_transports between two snapshots: the next hold must see it, and give it back.
        await PostconfAsync(postfix, "-e", "defer_transports = smtp");
        var third = await PostfixHold.HoldAsync(postfix.ConfigDirectory, null, log, CancellationToken.None);
        var heldThird = await PostconfAsync(postfix, "-h", "defer_transports");
        await third.ReleaseAsync();
        var afterThird = await PostconfAsync(postfix, "-n", "defer_transports");

        Assert.Equal("lmtp local", heldFirst);
        Assert.Equal("", afterFirst);
        Assert.True(ageAfterHold >= TimeSpan.FromSeconds(1.5), $"main.cf is {ageAfterHold.TotalSeconds:0.00} s old after the hold's edit; Postfix would pause for it");
        Assert.True(ageAfterRelease >= TimeSpan.FromSeconds(1.5), $"main.cf is {ageAfterRelease.TotalSeconds:0.00} s old after the release's edit");
        Assert.Equal(["settings (postconf)", "settings (unchanged)", "settings (postconf)"], log.Settings);
        Assert.Equal("smtp lmtp local", heldThird);
        Assert.Equal("defer_transports = smtp", afterThird);
        Assert.True(unchanged.Elapsed < TimeSpan.FromSeconds(10), $"an idle Postfix held in {unchanged.Elapsed.TotalSeconds:0.0} s");
    }

    private static async Task<string> PostconfAsync(PostfixInstance postfix, params string[] arguments) =>
        (await ProcessRunner.CheckAsync("/usr/sbin/postconf", ["-c", postfix.ConfigDirectory, .. arguments])).StandardOutput.Trim();

    /// <summary>Keeps the hold's settings step names (debug event 9026) in order.</summary>
    private sealed class StepLog : ILogger
    {
        public List<string> Settings { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (eventId.Id == 9026 && state is IReadOnlyList<KeyValuePair<string, object?>> fields
                && fields.FirstOrDefault(f => f.Key == "Step").Value is string step && step.StartsWith("settings", StringComparison.Ordinal))
            {
                lock (Settings)
                {
                    Settings.Add(step);
                }
            }
        }
    }
}
