using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Tidemark.Api;

namespace Tidemark.Agent;

/// <summary>
/// The one open quiesce at a time and its deadline (ADR 0015). A quiesce asks every plugin in turn;
/// if one fails, those already quiesced resume before the failure is answered. Once quiesced, a timer
/// resumes everything at the deadline whether or not the server calls back: an application never
/// stays frozen because a server or a link died. A resume after the deadline answers
/// <see cref="ResumeResultDto.Expired"/>, so the server labels its snapshot crash-consistent.
/// </summary>
public sealed class QuiesceSessions : IAsyncDisposable
{
    private readonly IReadOnlyList<IQuiescePlugin> _plugins;
    private readonly Func<IReadOnlyList<VolumeAttachmentDto>, IReadOnlyList<AgentMountEntry>>? _attach;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly TimeSpan _defaultDeadline;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private Session? _open;
    private AgentSessionDto? _last;
    private IReadOnlyList<AgentRecoveryDto>? _unreported;

    /// <param name="attach">
    /// The undeclared mounts a request's attachments put on its volumes (<see cref="NbdFuseAttachments.Attached"/>);
    /// null: none (only declared mounts count).
    /// </param>
    public QuiesceSessions(IReadOnlyList<IQuiescePlugin> plugins, TimeSpan defaultDeadline, TimeProvider time, ILogger logger, Func<IReadOnlyList<VolumeAttachmentDto>, IReadOnlyList<AgentMountEntry>>? attach = null)
    {
        _plugins = plugins;
        _attach = attach;
        _defaultDeadline = defaultDeadline;
        _time = time;
        _logger = logger;
    }

    public TimeSpan DefaultDeadline => _defaultDeadline;

    public IReadOnlyList<AgentSessionDto> Open => _open is { } s ? [s.ToDto()] : [];

    public AgentSessionDto? Last => _last;

    /// <summary>What the agent's start undid for a killed previous run (<see cref="JournalRecovery"/>); null when nothing.</summary>
    public IReadOnlyList<AgentRecoveryDto>? Recovered { get; private set; }

    /// <summary>Keeps the start-up recovery for status, and for the next quiesce answer (once), which the server records as events.</summary>
    public void ReportRecovery(IReadOnlyList<AgentRecoveryDto> recovered)
    {
        if (recovered.Count > 0)
        {
            Recovered = recovered;
            _unreported = recovered;
        }
    }

    public async Task<QuiesceResultDto> QuiesceAsync(QuiesceRequest request, CancellationToken ct)
    {
        if (request.Volumes is not { Count: > 0 } || request.Volumes.Count > 256 || request.Volumes.Any(v => string.IsNullOrEmpty(v) || v.Length > 256))
        {
            throw new StorageException(StorageError.InvalidArgument, "a quiesce names the volumes about to be cut (1-256 names)");
        }

        var deadline = request.DeadlineSeconds is { } seconds
            ? seconds is > 0 and <= AgentConfig.MaxDeadlineSeconds ? TimeSpan.FromSeconds(seconds) : throw new StorageException(StorageError.InvalidArgument, $"deadlineSeconds must be more than 0 and at most {AgentConfig.MaxDeadlineSeconds}, not {seconds}")
            : _defaultDeadline;
        if (!await _gate.WaitAsync(TimeSpan.Zero, ct))
        {
            throw Busy();
        }

        try
        {
            if (_open is not null)
            {
                throw Busy();
            }

            var volumes = request.Volumes.ToHashSet(StringComparer.Ordinal);
            var started = Stopwatch.GetTimestamp();
            var scope = new QuiesceScope(volumes, request.Attachments is { Count: > 0 } attachments && _attach is not null ? _attach(attachments) : []);
            var parts = new List<IQuiesced>();
            try
            {
                foreach (var plugin in _plugins)
                {
                    if (await plugin.QuiesceAsync(scope, ct) is { } part)
                    {
                        parts.Add(part);
                    }
                }
            }
            catch
            {
                await ResumeAllAsync(parts);
                throw;
            }

            if (ct.IsCancellationRequested)
            {
                // The server gave up waiting (its call timed out or it went away): nothing it could
                // cut now would be covered, so nothing stays quiesced until the deadline for it.
                await ResumeAllAsync(parts);
                ct.ThrowIfCancellationRequested();
            }

            if (parts.Count == 0)
            {
                throw new StorageException(StorageError.NotFound, $"nothing on this host sits on {string.Join(", ", volumes.Order(StringComparer.Ordinal))}; attach it through an export of the volume (nbdfuse), declare the mount in the agent's config ('tidemark agent pair --mount PATH=VOLUME') or leave this host out of the snapshot");
            }

            var now = _time.GetUtcNow();
            var session = new Session(Guid.NewGuid().ToString("N"), parts, now, now + deadline, started);
            session.OutputAtQuiesce = parts.Sum(p => p.Output.Count);
            session.Timer = _time.CreateTimer(_ => _ = ExpireAsync(session), null, deadline, Timeout.InfiniteTimeSpan);
            _open = session;
            var consistency = HostLevel(parts);
            var items = parts.SelectMany(p => p.Items).ToList();
            AgentLog.Quiesced(_logger, string.Join(", ", items), session.Id, session.ResumeBy);
            var recovered = Interlocked.Exchange(ref _unreported, null);
            return new QuiesceResultDto(session.Id, consistency, string.Join(", ", items), items, session.ResumeBy, deadline.TotalSeconds, Stopwatch.GetElapsedTime(started).TotalSeconds, Lines(parts), recovered);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// The host's level for one cut: the weakest level any application part claims (PostgreSQL in
    /// backup mode "application", one cut atomically "filesystem"), so one weak part is never hidden
    /// behind a strong one; "filesystem" when only file systems were frozen.
    /// </summary>
    public static string HostLevel(IEnumerable<IQuiesced> parts)
    {
        var claims = parts.Where(p => !p.UnderApplications).Select(p => p.Consistency).ToList();
        return claims.Count > 0 ? ConsistencyLevel.Weakest(claims) : ConsistencyLevel.FileSystem;
    }

    public async Task<ResumeResultDto> ResumeAsync(string id)
    {
        await _gate.WaitAsync();
        try
        {
            if (_open is { } open && open.Id == id)
            {
                await EndAsync(open, expired: false);
                var labels = open.Parts.SelectMany(p => p.BackupLabels).ToDictionary(l => l.Key, l => l.Value, StringComparer.Ordinal);
                var before = open.OutputAtQuiesce;
                return new ResumeResultDto(id, false, open.PausedSeconds, open.Items, labels.Count > 0 ? labels : null, Lines(open.Parts) is { } all ? [.. all.Skip(before)] : null);
            }

            if (_last is { } last && last.Id == id)
            {
                // The deadline came first (or a repeated call): say so, it decides the snapshot's label.
                return new ResumeResultDto(id, last.State == "expired", last.PausedSeconds ?? 0, last.Quiesced);
            }

            throw new StorageException(StorageError.NotFound, $"no quiesce session {id} on this agent (it may have restarted, which resumes everything)");
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task ExpireAsync(Session session)
    {
        await _gate.WaitAsync();
        try
        {
            if (_open == session)
            {
                AgentLog.ResumedAtDeadline(_logger, session.Id, session.ResumeBy, string.Join(", ", session.Items));
                await EndAsync(session, expired: true);
            }
        }
        catch (Exception ex)
        {
            AgentLog.ResumeAtDeadlineFailed(_logger, ex, session.Id);
        }
        finally
        {
            _gate.Release();
        }
    }

    private async Task EndAsync(Session session, bool expired)
    {
        session.Timer?.Dispose();
        _open = null;
        try
        {
            await ResumeAllAsync(session.Parts);
        }
        finally
        {
            session.State = expired ? "expired" : "resumed";
            session.EndedAt = _time.GetUtcNow();
            session.PausedSeconds = Stopwatch.GetElapsedTime(session.Started).TotalSeconds;
            session.FrozenSeconds = session.Parts.Max(p => p.FrozenSeconds);
            _last = session.ToDto();
        }
    }

    /// <summary>Resumes in reverse order of quiescing (the application before the file system under it was frozen last).</summary>
    private static async Task ResumeAllAsync(List<IQuiesced> parts)
    {
        List<Exception>? failures = null;
        for (var i = parts.Count - 1; i >= 0; i--)
        {
            try
            {
                await parts[i].ResumeAsync();
            }
            catch (Exception ex)
            {
                (failures ??= []).Add(ex);
            }
        }

        if (failures is not null)
        {
            throw new StorageException(StorageError.IoError, "resuming failed: " + string.Join("; ", failures.Select(f => f.Message)));
        }
    }

    private static List<string>? Lines(List<IQuiesced> parts) =>
        parts.SelectMany(p => p.Output).ToList() is { Count: > 0 } lines ? lines : null;

    private StorageException Busy() =>
        new(StorageError.Busy, _open is { } open
            ? $"another quiesce is open (session {open.Id}, resumes by {open.ResumeBy:O}); one snapshot at a time per host"
            : "another quiesce is starting; one snapshot at a time per host");

    /// <summary>
    /// At shutdown nothing may stay quiesced. Waits for a quiesce or resume in progress (the gate),
    /// so a plugin is never resumed twice or while it is still quiescing; resumes without blocking a thread.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync();
        try
        {
            if (_open is { } open)
            {
                AgentLog.ResumingOnStop(_logger, open.Id, string.Join(", ", open.Items));
                await EndAsync(open, expired: false);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    private sealed class Session(string id, List<IQuiesced> parts, DateTimeOffset startedAt, DateTimeOffset resumeBy, long started)
    {
        public string Id { get; } = id;

        public List<IQuiesced> Parts { get; } = parts;

        public IReadOnlyList<string> Items { get; } = [.. parts.SelectMany(p => p.Items)];

        public DateTimeOffset StartedAt { get; } = startedAt;

        public DateTimeOffset ResumeBy { get; } = resumeBy;

        public long Started { get; } = started;

        public ITimer? Timer { get; set; }

        public int OutputAtQuiesce { get; set; }

        public string State { get; set; } = "quiesced";

        public DateTimeOffset? EndedAt { get; set; }

        public double PausedSeconds { get; set; }

        public double? FrozenSeconds { get; set; }

        public AgentSessionDto ToDto() => new(Id, State, StartedAt, ResumeBy, Items, EndedAt, EndedAt is null ? null : PausedSeconds, FrozenSeconds);
    }
}
