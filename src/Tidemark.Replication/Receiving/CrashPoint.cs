using System.Diagnostics;

namespace Tidemark.Replication;

/// <summary>
/// For crash tests only: TIDEMARK_FAULT_POINT=NAME[:N] makes this process kill itself (SIGKILL, as
/// kill -9 would, no cleanup) the Nth time (default: the first) it passes the fault point NAME, e.g.
/// "replica.commit" inside the engine's commit of a replicated snapshot. Unset, it does nothing.
/// A commit can only be cut at a chosen instant from the inside: from outside it lasts microseconds.
/// </summary>
public static class CrashPoint
{
    public const string Variable = "TIDEMARK_FAULT_POINT";

    /// <summary>The fault point action <see cref="Variable"/> asks for; nothing when it is not set.</summary>
    public static Action<string> FromEnvironment()
    {
        var setting = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrEmpty(setting))
        {
            return _ => { };
        }

        var parts = setting.Split(':', 2);
        var name = parts[0];
        var at = parts.Length == 2 && int.TryParse(parts[1], out var n) && n > 0
            ? n
            : parts.Length == 2 ? throw new ArgumentException($"{Variable}={setting}: the pass to kill at must be a positive number (NAME or NAME:N)") : 1;
        var passes = 0;
        return point =>
        {
            if (point != name || Interlocked.Increment(ref passes) != at)
            {
                return;
            }

            Console.Error.WriteLine($"{Variable}: killing this process at {point} (pass {at})");
            Console.Error.Flush();
            using var self = Process.GetCurrentProcess();
            self.Kill();
        };
    }
}
