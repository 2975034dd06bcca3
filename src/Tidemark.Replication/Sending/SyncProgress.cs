using Tidemark.Engine;

namespace Tidemark.Replication;

/// <summary>
/// A sync's progress across members and attempts: bytes of ranges covered per member snapshot,
/// each counted once however often a broken transfer resumes; what a resume skips (sent before
/// this job) counts as done but not towards the rate, so the ETA stays right.
/// </summary>
internal sealed class SyncProgress(OperationProgress? progress)
{
    private readonly Dictionary<Guid, long> _covered = [];

    public void AddToTotal(long bytes)
    {
        if (progress is { Total: { } total })
        {
            progress.SetTotal(total + bytes);
        }
    }

    public void SetTotalOnce(Func<long> total)
    {
        if (progress is { Total: null })
        {
            progress.SetTotal(progress.Done + total());
        }
    }

    public void Covered(Guid member, long covered, bool resumed)
    {
        lock (_covered)
        {
            var before = _covered.GetValueOrDefault(member);
            if (progress is null || covered <= before)
            {
                return;
            }

            _covered[member] = covered;
            if (resumed)
            {
                progress.Skip(covered - before);
            }
            else
            {
                progress.Advance(covered - before);
            }
        }
    }
}
