using System.Threading.Tasks.Sources;

namespace Tidemark;

/// <summary>
/// The source of a <see cref="ValueTask"/> that is reused once its result was taken (ADR 0021: no
/// Task per read). Continuations run inline on the thread that completes it; after the consumer took
/// the result, <see cref="Returned"/> gives the source back to its owner's pool.
/// </summary>
public abstract class PooledValueTaskSource : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core;

    /// <summary>The task of the current use; taken once per use.</summary>
    protected ValueTask CurrentTask => new(this, _core.Version);

    public ValueTaskSourceStatus GetStatus(short token) => _core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);

    public void GetResult(short token)
    {
        try
        {
            _core.GetResult(token);
        }
        finally
        {
            _core.Reset();
            Returned();
        }
    }

    /// <summary>Ends the current use: successfully when <paramref name="error"/> is null. Runs the consumer's continuation here.</summary>
    protected void Complete(Exception? error)
    {
        if (error is null)
        {
            _core.SetResult(true);
        }
        else
        {
            _core.SetException(error);
        }
    }

    /// <summary>The consumer took the result: the source may be reused (or dropped).</summary>
    protected abstract void Returned();
}
