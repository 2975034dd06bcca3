using System.Net;
using Microsoft.Extensions.Logging;

namespace Tidemark.Server;

/// <summary>
/// Counts a listener's connections in total and per source address, admits or refuses each new
/// one against <see cref="ConnectionLimits"/>, and keeps the counters /metrics shows. Refusals are
/// logged at most once per <see cref="LogInterval"/> per reason, with how many were refused since,
/// so a flood cannot flood the log as well.
/// </summary>
internal sealed partial class ConnectionAdmission(ConnectionLimits limits, string protocol, ILogger logger)
{
    public static readonly TimeSpan LogInterval = TimeSpan.FromSeconds(10);

    private readonly object _lock = new();
    private readonly Dictionary<IPAddress, int> _perSource = [];
    private readonly RateLimitedCount _totalCapLog = new();
    private readonly RateLimitedCount _sourceCapLog = new();
    private int _open;
    private int _negotiating;
    private long _refusedTotalCap;
    private long _refusedSourceCap;
    private long _handshakeTimeouts;
    private long _accepted;

    public ConnectionLimits Limits => limits;

    public int Open => Volatile.Read(ref _open);

    public int Negotiating => Volatile.Read(ref _negotiating);

    public long Accepted => Interlocked.Read(ref _accepted);

    public long RefusedTotalCap => Interlocked.Read(ref _refusedTotalCap);

    public long RefusedSourceCap => Interlocked.Read(ref _refusedSourceCap);

    public long HandshakeTimeouts => Interlocked.Read(ref _handshakeTimeouts);

    /// <summary>The address connections are counted under: IPv4 for mapped IPv6 addresses, null for a Unix-domain socket.</summary>
    public static IPAddress? SourceOf(EndPoint? remote) =>
        remote is IPEndPoint ip ? (ip.Address.IsIPv4MappedToIPv6 ? ip.Address.MapToIPv4() : ip.Address) : null;

    /// <summary>Takes a slot for a new connection (counted as negotiating), or false when a cap is reached (then logged and counted).</summary>
    public bool TryAdmit(IPAddress? source)
    {
        lock (_lock)
        {
            if (_open >= limits.MaxConnections)
            {
                _refusedTotalCap++;
                if (_totalCapLog.ShouldLog(out var since))
                {
                    LogTotalCap(logger, protocol, limits.MaxConnections, source?.ToString() ?? "unix", since);
                }

                return false;
            }

            var fromSource = 0;
            if (source is not null && _perSource.TryGetValue(source, out fromSource) && fromSource >= limits.MaxConnectionsPerSource)
            {
                _refusedSourceCap++;
                if (_sourceCapLog.ShouldLog(out var since))
                {
                    LogSourceCap(logger, protocol, source.ToString(), limits.MaxConnectionsPerSource, since);
                }

                return false;
            }

            if (source is not null)
            {
                _perSource[source] = fromSource + 1;
            }

            _open++;
            _negotiating++;
            _accepted++;
            return true;
        }
    }

    /// <summary>A connection admitted earlier finished its negotiation.</summary>
    public void Negotiated() => Interlocked.Decrement(ref _negotiating);

    public void HandshakeTimedOut() => Interlocked.Increment(ref _handshakeTimeouts);

    /// <summary>Gives an admitted connection's slot back.</summary>
    public void Release(IPAddress? source, bool stillNegotiating)
    {
        lock (_lock)
        {
            _open--;
            if (stillNegotiating)
            {
                _negotiating--;
            }

            if (source is not null && _perSource.TryGetValue(source, out var count))
            {
                if (count <= 1)
                {
                    _perSource.Remove(source);
                }
                else
                {
                    _perSource[source] = count - 1;
                }
            }
        }
    }

    [LoggerMessage(EventId = 8030, Level = LogLevel.Warning, Message = "{Protocol}: refused a connection from {Source}: {Max} connections are open (max-connections); {Refused} refused in all since the last such line")]
    private static partial void LogTotalCap(ILogger logger, string protocol, int max, string source, long refused);

    [LoggerMessage(EventId = 8031, Level = LogLevel.Warning, Message = "{Protocol}: refused a connection from {Source}: it has {Max} open already (max-connections-per-source); {Refused} refused in all since the last such line")]
    private static partial void LogSourceCap(ILogger logger, string protocol, string source, int max, long refused);

    /// <summary>Lets one log line through per <see cref="LogInterval"/> and counts the events in between.</summary>
    internal sealed class RateLimitedCount
    {
        private long _nextAt;
        private long _since;

        /// <summary>True when this event should be logged; <paramref name="count"/> is how many happened since the last logged one (this one included).</summary>
        public bool ShouldLog(out long count)
        {
            var total = Interlocked.Increment(ref _since);
            var now = Environment.TickCount64;
            var next = Interlocked.Read(ref _nextAt);
            if (now < next || Interlocked.CompareExchange(ref _nextAt, now + (long)LogInterval.TotalMilliseconds, next) != next)
            {
                count = 0;
                return false;
            }

            count = total;
            Interlocked.Add(ref _since, -total);
            return true;
        }
    }
}
