using System.Collections.Concurrent;
using System.Net;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Server;

/// <summary>
/// The NBD connections and iSCSI sessions being served, and which volumes, views and snapshots they
/// hold. Operations that change a volume's content under its users (rollback) ask here first: a
/// client that keeps reading after its disk changed under it corrupts what it caches (a mounted ext4
/// ends up matching neither image), so they refuse while anyone is attached, naming who, and with
/// force they first end those sessions the protocol's way.
/// </summary>
public sealed partial class ClientSessions(ILogger<ClientSessions> logger)
{
    /// <summary>How long an iSCSI initiator gets to log out after it was asked to (RFC 7143 11.9.1 Parameter3).</summary>
    public static readonly TimeSpan DefaultLogoutGrace = TimeSpan.FromSeconds(5);

    /// <summary>How long a closed connection gets to finish its receive loop.</summary>
    private static readonly TimeSpan CloseWait = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<Session, byte> _sessions = new();

    /// <summary>Maps a device handed to a frontend back to the volume, view or snapshot it serves.</summary>
    public Func<IBlockDevice, string?> TargetOf { get; set; } = _ => null;

    public int Count => _sessions.Count;

    /// <summary>
    /// Records a connection for as long as the returned handle is not disposed. <paramref name="devices"/>
    /// is asked each time (an NBD client picks its export during the handshake, an initiator its target
    /// at login); <paramref name="requestLeave"/>, when given, asks the client to leave by itself
    /// (iSCSI logout request) and says whether it could; <paramref name="close"/> ends the connection.
    /// </summary>
    public IDisposable Attach(string protocol, EndPoint? remote, Func<string?> initiator, Func<IEnumerable<IBlockDevice>> devices, Func<TimeSpan, CancellationToken, Task<bool>>? requestLeave, Action close)
    {
        var session = new Session(this, protocol, remote?.ToString() ?? "unknown", initiator, devices, requestLeave, close);
        _sessions[session] = 0;
        return session;
    }

    /// <summary>The sessions that hold <paramref name="target"/> (a volume, view or VOLUME@SNAPSHOT) itself.</summary>
    public IReadOnlyList<ClientSessionDto> AttachedTo(string target) =>
        [.. Holding(target).Select(s => s.ToDto(target)).OrderBy(d => d.Protocol, StringComparer.Ordinal).ThenBy(d => d.Client, StringComparer.Ordinal)];

    /// <summary>
    /// Refuses deleting <paramref name="volume"/> while clients hold it or any of its snapshots
    /// (VOLUME@SNAPSHOT): deleting a volume deletes its snapshots, and a session keeps its device after
    /// its export is removed, as a standby client keeps the snapshot it attached to.
    /// </summary>
    public void ThrowIfVolumeOrSnapshotsAttached(string volume, string operation)
    {
        var prefix = volume + "@";
        var attached = _sessions.Keys
            .Where(s => !s.Ended.IsCompleted)
            .SelectMany(s => s.Devices().Select(TargetOf).Where(t => t == volume || (t is not null && t.StartsWith(prefix, StringComparison.Ordinal))).Distinct().Select(t => s.ToDto(t!)))
            .OrderBy(d => d.Protocol, StringComparer.Ordinal).ThenBy(d => d.Client, StringComparer.Ordinal)
            .ToList();
        if (attached.Count == 0)
        {
            return;
        }

        var targets = string.Join(", ", attached.Select(d => d.Target).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal));
        throw new StorageException(
            StorageError.Busy,
            $"{operation} would remove {targets} under {Describe(attached)}; disconnect them first ('tidemark export list' shows the exports they use)");
    }

    /// <summary>Refuses <paramref name="operation"/> while clients hold <paramref name="target"/>, naming them and the way out.</summary>
    public void ThrowIfAttached(string target, string operation, bool canForce = true)
    {
        var attached = AttachedTo(target);
        if (attached.Count == 0)
        {
            return;
        }

        throw new StorageException(
            StorageError.Busy,
            $"{operation} would change {target} under {Describe(attached)}; disconnect them first"
            + (canForce ? ", or repeat with --force to end their sessions (iSCSI initiators are asked to log out)" : " ('tidemark export list' shows the exports they use)"));
    }

    /// <summary>
    /// Ends every session that holds <paramref name="target"/>: iSCSI initiators are asked to log out
    /// (and closed when they have not within <paramref name="logoutGrace"/>), NBD connections are closed
    /// (the protocol has no way to ask a client to leave). Returns the sessions it ended.
    /// </summary>
    public async Task<IReadOnlyList<ClientSessionDto>> EndAsync(string target, string reason, TimeSpan logoutGrace, CancellationToken cancellationToken)
    {
        var holding = Holding(target).ToList();
        var ended = holding.Select(s => s.ToDto(target)).ToList();
        var asked = new List<Session>();
        foreach (var session in holding)
        {
            LogEnding(logger, session.Protocol, session.Remote, session.Initiator() ?? "-", target, reason);
        }

        // Asked all at once: each request waits (at most the grace) for its connection's output.
        var answers = await Task.WhenAll(holding.Select(s => s.RequestLeave?.Invoke(logoutGrace, cancellationToken) ?? Task.FromResult(false)));
        for (var i = 0; i < holding.Count; i++)
        {
            if (answers[i])
            {
                asked.Add(holding[i]);
            }
            else
            {
                holding[i].Close();
            }
        }

        await WaitAsync(asked, logoutGrace, cancellationToken);
        foreach (var session in asked.Where(s => !s.Ended.IsCompleted))
        {
            LogNoLogout(logger, session.Remote, session.Initiator() ?? "-", logoutGrace.TotalSeconds);
            session.Close();
        }

        await WaitAsync(holding, CloseWait, cancellationToken);
        if (holding.Where(s => !s.Ended.IsCompleted).ToList() is { Count: > 0 } stuck)
        {
            throw new StorageException(StorageError.Busy, $"{Describe([.. stuck.Select(s => s.ToDto(target))])} did not end within {CloseWait.TotalSeconds:F0} s; nothing was changed, try again");
        }

        return ended;
    }

    private static async Task WaitAsync(IEnumerable<Session> sessions, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await Task.WhenAll(sessions.Select(s => s.Ended)).WaitAsync(timeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            // The caller looks at which ones ended.
        }
    }

    private IEnumerable<Session> Holding(string target) =>
        _sessions.Keys.Where(s => !s.Ended.IsCompleted && s.Devices().Any(d => TargetOf(d) == target));

    private static string Describe(IReadOnlyList<ClientSessionDto> sessions)
    {
        var named = sessions.Take(5).Select(s => s.Initiator is null ? $"{s.Protocol} client {s.Client}" : $"{s.Protocol} initiator {s.Initiator} at {s.Client}");
        var more = sessions.Count > 5 ? $" and {sessions.Count - 5} more" : string.Empty;
        return $"{sessions.Count} connected client{(sessions.Count == 1 ? string.Empty : "s")} ({string.Join(", ", named)}{more})";
    }

    [LoggerMessage(EventId = 1211, Level = LogLevel.Warning, Message = "ending {Protocol} session from {Remote} (initiator {Initiator}) on {Target}: {Reason}")]
    private static partial void LogEnding(ILogger logger, string protocol, string remote, string initiator, string target, string reason);

    [LoggerMessage(EventId = 1212, Level = LogLevel.Warning, Message = "iSCSI initiator {Initiator} at {Remote} did not log out within {Seconds} s when asked; closing its connection")]
    private static partial void LogNoLogout(ILogger logger, string remote, string initiator, double seconds);

    private sealed class Session(ClientSessions owner, string protocol, string remote, Func<string?> initiator, Func<IEnumerable<IBlockDevice>> devices, Func<TimeSpan, CancellationToken, Task<bool>>? requestLeave, Action close) : IDisposable
    {
        private readonly TaskCompletionSource _ended = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public string Protocol { get; } = protocol;

        public string Remote { get; } = remote;

        public Func<string?> Initiator { get; } = initiator;

        public Func<IEnumerable<IBlockDevice>> Devices { get; } = devices;

        public Func<TimeSpan, CancellationToken, Task<bool>>? RequestLeave { get; } = requestLeave;

        public Task Ended => _ended.Task;

        public void Close() => close();

        public ClientSessionDto ToDto(string target) => new(Protocol, Remote, Initiator(), target);

        public void Dispose()
        {
            owner._sessions.TryRemove(this, out _);
            _ended.TrySetResult();
        }
    }
}
