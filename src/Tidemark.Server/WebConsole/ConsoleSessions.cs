using System.Security.Cryptography;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Api;

namespace Tidemark.Server.WebConsole;

/// <summary>
/// Web console sessions (ADR 0016). Signing in with a token's secret makes a session: a random id
/// in an HttpOnly cookie and a separate random CSRF token that the page sends back in a header with
/// every change. A session acts as its token: it names the token, and every request re-reads that
/// token, so revoking it (or replacing it under the same name) ends its sessions at once, and a role
/// change applies at once. Sessions live in memory only: a restart signs everyone out, and no
/// session secret is ever written to disk.
/// </summary>
public sealed class ConsoleSessions
{
    public const string CookieName = "tidemark_session";
    public const string CsrfHeader = "X-Tidemark-CSRF";

    /// <summary>Sent by the console on requests it makes by itself (live reloads, polling): they do not count as use of the session.</summary>
    public const string BackgroundHeader = "X-Tidemark-Background";

    /// <summary>Unused this long, a session ends (an administrator who walked away).</summary>
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromHours(1);

    /// <summary>However busy, a session ends this long after sign-in.</summary>
    public static readonly TimeSpan MaxAge = TimeSpan.FromHours(12);

    /// <summary>More live sessions than any team opens; past it the least recently used one ends.</summary>
    public const int MaxSessions = 10_000;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private readonly TokenStore _tokens;
    private readonly TimeProvider _time;

    public ConsoleSessions(TokenStore tokens, TimeProvider time)
    {
        _tokens = tokens;
        _time = time;
    }

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _sessions.Count;
            }
        }
    }

    /// <summary>A new session for <paramref name="token"/>; the caller sets the cookie to <see cref="Session.Id"/>.</summary>
    public Session Create(TokenDto token)
    {
        var now = _time.GetUtcNow();
        var session = new Session(NewSecret(), NewSecret(), token.Name, token.Created, now) { LastUsed = now };
        lock (_lock)
        {
            RemoveExpired(now);
            if (_sessions.Count >= MaxSessions)
            {
                var oldest = _sessions.Values.MinBy(s => s.LastUsed)!;
                _sessions.Remove(oldest.Id);
            }

            _sessions[session.Id] = session;
        }

        return session;
    }

    /// <summary>
    /// The live session with this cookie value and its token as it is now, or null (unknown, expired,
    /// token revoked). With <paramref name="touch"/> the request counts as use (the idle clock restarts).
    /// </summary>
    public (Session Session, TokenDto Token)? Find(string? id, bool touch = true)
    {
        if (string.IsNullOrEmpty(id) || id.Length > 64)
        {
            return null;
        }

        var now = _time.GetUtcNow();
        Session? session;
        lock (_lock)
        {
            if (!_sessions.TryGetValue(id, out session))
            {
                return null;
            }

            if (Expired(session, now))
            {
                _sessions.Remove(id);
                return null;
            }

            if (touch)
            {
                session.LastUsed = now;
            }
        }

        var token = _tokens.Named(session.TokenName);
        if (token is null || token.Created != session.TokenCreated)
        {
            End(id);
            return null;
        }

        return (session, token);
    }

    /// <summary>
    /// Whether the session is still live, without counting as use: a live-update stream asks this each
    /// tick, and an open tab alone must not keep a walked-away administrator signed in.
    /// </summary>
    public bool IsLive(string id)
    {
        var now = _time.GetUtcNow();
        Session? session;
        lock (_lock)
        {
            if (!_sessions.TryGetValue(id, out session) || Expired(session, now))
            {
                return false;
            }
        }

        return _tokens.Named(session.TokenName) is { } token && token.Created == session.TokenCreated;
    }

    public void End(string id)
    {
        lock (_lock)
        {
            _sessions.Remove(id);
        }
    }

    /// <summary>Whether <paramref name="sent"/> is this session's CSRF token (compared in constant time).</summary>
    public static bool CsrfMatches(Session session, string? sent) =>
        sent is not null
        && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(sent), Encoding.ASCII.GetBytes(session.Csrf));

    private static bool Expired(Session session, DateTimeOffset now) =>
        now - session.LastUsed > IdleTimeout || now - session.Created > MaxAge;

    private void RemoveExpired(DateTimeOffset now)
    {
        foreach (var s in _sessions.Values.Where(s => Expired(s, now)).ToList())
        {
            _sessions.Remove(s.Id);
        }
    }

    private static string NewSecret() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public sealed record Session(string Id, string Csrf, string TokenName, DateTimeOffset TokenCreated, DateTimeOffset Created)
    {
        public DateTimeOffset LastUsed { get; set; }
    }
}
