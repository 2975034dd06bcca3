using System.Diagnostics;
using System.Globalization;

namespace Tidemark.Recovery;

/// <summary>
/// Where a recovery's seconds go (issue 23: under 10 s from the command to the message in the
/// mailbox): each step's name and wall-clock time, in the order the steps ended, so an operator and
/// bench/recovery see which step to blame. Thread-safe: steps may overlap (a login while the view
/// mounts), and then their seconds add up to more than the whole.
/// </summary>
public sealed class StepTimings
{
    private readonly Lock _lock = new();
    private readonly List<(string Step, double Seconds)> _steps = [];

    public IReadOnlyList<(string Step, double Seconds)> Steps
    {
        get
        {
            lock (_lock)
            {
                return [.. _steps];
            }
        }
    }

    /// <summary>Adds a step; a step of the same name again (one APPEND per message) adds to its seconds, keeping its place.</summary>
    public void Add(string step, TimeSpan elapsed)
    {
        lock (_lock)
        {
            var at = _steps.FindIndex(s => s.Step == step);
            if (at >= 0)
            {
                _steps[at] = (step, Math.Round(_steps[at].Seconds + elapsed.TotalSeconds, 3));
            }
            else
            {
                _steps.Add((step, Math.Round(elapsed.TotalSeconds, 3)));
            }
        }
    }

    /// <summary>Times <paramref name="step"/> from now until the returned scope is disposed (also when it throws).</summary>
    public Scope Measure(string step) => new(this, step, Stopwatch.GetTimestamp());

    /// <summary>"attach 0.31 s, mount 0.12 s, ...": one line for a log or stderr.</summary>
    public static string Format(IEnumerable<(string Step, double Seconds)> steps) =>
        string.Join(", ", steps.Select(s => string.Create(CultureInfo.InvariantCulture, $"{s.Step} {s.Seconds:F2} s")));

    public override string ToString() => Format(Steps);

    public readonly struct Scope(StepTimings timings, string step, long started) : IDisposable
    {
        public void Dispose() => timings.Add(step, Stopwatch.GetElapsedTime(started));
    }
}
