namespace Tidemark.Api;

/// <summary>
/// The consistency levels a snapshot can have (ADR 0015), weakest first, and how the levels of its
/// parts combine: a snapshot is only as consistent as its weakest part, so the weakest wins. An
/// unknown level counts as crash: a label may understate, never overstate.
/// </summary>
public static class ConsistencyLevel
{
    public const string Crash = "crash";
    public const string FileSystem = "filesystem";
    public const string Application = "application";

    /// <summary>crash (or unknown) 0, filesystem 1, application 2.</summary>
    public static int Rank(string? level) => level switch
    {
        Application => 2,
        FileSystem => 1,
        _ => 0,
    };

    /// <summary>The weakest of <paramref name="levels"/>; crash when there are none (nothing vouches for more).</summary>
    public static string Weakest(IEnumerable<string> levels)
    {
        string? weakest = null;
        foreach (var level in levels)
        {
            if (weakest is null || Rank(level) < Rank(weakest))
            {
                weakest = Rank(level) == 0 ? Crash : level;
            }
        }

        return weakest ?? Crash;
    }
}
