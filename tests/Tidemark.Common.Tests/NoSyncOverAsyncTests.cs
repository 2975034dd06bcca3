using System.Text.RegularExpressions;

namespace Tidemark.Common.Tests;

/// <summary>
/// Issue 18: no code in src/ waits on a task synchronously. A thread that blocks on a task ties up
/// that thread until the task's continuation runs somewhere else, and on 2 cores a starved pool
/// turns that into a stall. A source rule rather than a behaviour test, because the damage is a
/// pattern, not one call site; a new synchronous wait on a primitive that is not a task joins the
/// allow-list below with its reason.
/// </summary>
public sealed partial class NoSyncOverAsyncTests
{
    /// <summary>
    /// <c>.Wait(</c> receivers that are not tasks: the monitor, the iSCSI connection's output
    /// semaphore, and the rate limiter's timer event.
    /// </summary>
    private static readonly HashSet<string> NotTasks = ["Monitor", "_outputGate", "elapsed"];

    [Fact]
    public void SourceFiles_NeverBlockOnATask()
    {
        var found = new List<string>();
        var src = Path.Combine(SourceTree.RepositoryRoot(), "src");
        foreach (var file in SourceTree.SourceFiles())
        {
            var lines = File.ReadAllLines(file);
            for (var i = 0; i < lines.Length; i++)
            {
                var line = lines[i].TrimStart();
                if (line.StartsWith("//", StringComparison.Ordinal) || line.StartsWith("///", StringComparison.Ordinal))
                {
                    continue;
                }

                var where = $"{Path.GetRelativePath(src, file)}:{i + 1}: {line}";
                if (BlocksOnAwaiter().IsMatch(line) || WaitAllOrAny().IsMatch(line))
                {
                    found.Add(where);
                }

                foreach (Match wait in WaitCall().Matches(line))
                {
                    if (!NotTasks.Contains(wait.Groups["receiver"].Value))
                    {
                        found.Add(where);
                    }
                }
            }
        }

        Assert.True(found.Count == 0, "synchronous waits on a task (await it, or hand over through a primitive that is not a task):\n" + string.Join('\n', found));
    }

    /// <summary><c>x.GetAwaiter().GetResult()</c>, and <c>x.AsTask()</c>/<c>completion.Task</c> followed by <c>.Wait()</c>/<c>.Result</c>.</summary>
    [GeneratedRegex(@"GetAwaiter\(\)\s*\.GetResult\(\)|\.(AsTask\(\)|Task)\s*\.(Wait\(|Result\b)")]
    private static partial Regex BlocksOnAwaiter();

    /// <summary><c>receiver.Wait(...)</c>, the receiver captured.</summary>
    [GeneratedRegex(@"(?<receiver>[A-Za-z_][A-Za-z0-9_]*)\s*\.\s*Wait\(")]
    private static partial Regex WaitCall();

    /// <summary><c>Task.WaitAll(</c>, <c>Task.WaitAny(</c>.</summary>
    [GeneratedRegex(@"\bTask\.Wait(All|Any)\(")]
    private static partial Regex WaitAllOrAny();
}
