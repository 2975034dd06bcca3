using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

/// <summary>Target-initiated events: the target asks the initiator to leave (RFC 7143 11.9).</summary>
public sealed partial class IscsiConnection
{
    /// <summary>The target this session logged in to (null before login and in a discovery session).</summary>
    public IscsiTarget? Target => _target;

    /// <summary>
    /// Asks the initiator to log out within <paramref name="within"/> (RFC 7143 11.9.1, AsyncEvent 1:
    /// the initiator "MUST honor this request by issuing a Logout as early as possible, but no later
    /// than Parameter3 seconds"). Used before the volume under the session changes, so the initiator
    /// ends its I/O cleanly instead of reading another image. Safe from any thread: it takes the
    /// output between the receive loop's batches, as the keepalive does, and waits for neither the
    /// loop nor the send on a thread. False when the connection is not in full feature phase, is
    /// ending, or its output was not free within <paramref name="within"/>; the caller then closes it.
    /// </summary>
    public async Task<bool> RequestLogoutAsync(TimeSpan within, CancellationToken cancellationToken = default)
    {
        if (!Volatile.Read(ref _fullFeature) || _closing)
        {
            return false;
        }

        // The loop keeps the gate once it has ended, so this wait is bounded too.
        if (!await _outputGate.WaitAsync(within, cancellationToken).ConfigureAwait(false))
        {
            return false;
        }

        try
        {
            if (_closing)
            {
                return false;
            }

            var seconds = (ushort)Math.Clamp(Math.Ceiling(within.TotalSeconds), 1, ushort.MaxValue);
            new AsyncMessagePdu(AsyncEvent.LogoutRequest, 0, 0, seconds, Sequence).WriteTo(_outHeader);

            // RFC 7143 11.9: an Asynchronous Message carries a StatSN the initiator acknowledges, like a response.
            _statSn++;
            SendPdu([]);
            await FlushOutputAsync(cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            return false;
        }
        finally
        {
            _outputGate.Release();
        }
    }
}
