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
    /// output the way the keepalive does. False when the connection is not in full feature phase or
    /// is ending; the caller then closes it.
    /// </summary>
    public bool RequestLogout(TimeSpan within)
    {
        if (!Volatile.Read(ref _fullFeature) || _closing)
        {
            return false;
        }

        EnterOutputGate();
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
            _outputPending = false;
            _outputBytes = 0;
            Output.FlushAsync().AsTask().GetAwaiter().GetResult();
            return true;
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException or OperationCanceledException)
        {
            return false;
        }
        finally
        {
            Volatile.Write(ref _outputGate, 0);
        }
    }
}
