using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Tidemark;

/// <summary>
/// Small pieces of the asynchronous read path (ADR 0021): run something once a pending
/// <see cref="ValueTask"/> ended, without a Task, closure or state machine per call.
/// </summary>
public static class Completion
{
    /// <summary>The synchronous read as a completed task (the default of <see cref="IBlockDevice.ReadAsync"/>).</summary>
    public static ValueTask ReadInline(this IBlockDevice device, long offsetBytes, Memory<byte> destination)
    {
        try
        {
            device.Read(offsetBytes, destination.Span);
            return default;
        }
        catch (Exception ex)
        {
            return ValueTask.FromException(ex);
        }
    }

    /// <summary>
    /// Ends a task that <see cref="ValueTask.IsCompleted"/> says has ended (so this never waits):
    /// null when it succeeded, else its exception. Ending it gives a pooled source back.
    /// </summary>
    public static Exception? Consume(in ValueTask completed)
    {
        if (!completed.IsCompleted)
        {
            throw new InvalidOperationException("only a completed task is consumed here");
        }

        try
        {
            var awaiter = completed.ConfigureAwait(false).GetAwaiter();
            awaiter.GetResult(); // completed: returns or throws at once
            return null;
        }
        catch (Exception ex)
        {
            return ex;
        }
    }

    /// <summary>
    /// A task that ends like <paramref name="pending"/>, after <paramref name="after"/> ran with
    /// <paramref name="state"/> and the error (null on success). When <paramref name="pending"/> has
    /// ended already, <paramref name="after"/> runs here; otherwise on the thread that ends it, inline.
    /// <paramref name="after"/> must not throw or block (it releases what the operation held).
    /// </summary>
    public static ValueTask Then<TState>(ValueTask pending, TState state, Action<TState, Exception?> after)
    {
        if (pending.IsCompleted)
        {
            var error = Consume(pending);
            after(state, error);
            return error is null ? default : ValueTask.FromException(error);
        }

        return ThenSource<TState>.Rent().Start(pending, state, after);
    }

    /// <summary>The pooled source behind <see cref="Then{TState}"/>: one per operation in flight, reused after its result was taken.</summary>
    private sealed class ThenSource<TState> : PooledValueTaskSource
    {
        private const int MaxPooled = 256;
        private static readonly ConcurrentQueue<ThenSource<TState>> Pool = new();
        private static int _pooled;

        private readonly Action _onPending;
        private ConfiguredValueTaskAwaitable.ConfiguredValueTaskAwaiter _awaiter;
        private TState _state = default!;
        private Action<TState, Exception?>? _after;

        private ThenSource() => _onPending = OnPending;

        public static ThenSource<TState> Rent()
        {
            if (Pool.TryDequeue(out var source))
            {
                Interlocked.Decrement(ref _pooled);
                return source;
            }

            return new ThenSource<TState>();
        }

        public ValueTask Start(ValueTask pending, TState state, Action<TState, Exception?> after)
        {
            _state = state;
            _after = after;
            var task = CurrentTask;
            _awaiter = pending.ConfigureAwait(false).GetAwaiter();
            _awaiter.UnsafeOnCompleted(_onPending);
            return task;
        }

        protected override void Returned()
        {
            if (Interlocked.Increment(ref _pooled) <= MaxPooled)
            {
                Pool.Enqueue(this);
            }
            else
            {
                Interlocked.Decrement(ref _pooled);
            }
        }

        private void OnPending()
        {
            Exception? error = null;
            try
            {
                _awaiter.GetResult(); // called back because it ended: never waits
            }
            catch (Exception ex)
            {
                error = ex;
            }

            var after = _after!;
            var state = _state;
            _awaiter = default;
            _after = null;
            _state = default!;
            after(state, error);
            Complete(error);
        }
    }
}
