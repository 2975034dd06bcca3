namespace Tidemark.Agent;

/// <summary>
/// One kind of application the agent can quiesce (file systems, PostgreSQL, scripts...). A plugin
/// quiesces what of its kind sits on the volumes about to be cut, or returns null when nothing does.
/// A plugin that fails must leave nothing quiesced behind it.
/// </summary>
public interface IQuiescePlugin
{
    string Name { get; }

    Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct);

    /// <summary>
    /// Quiesces for one request: plugins that map paths to volumes use <see cref="QuiesceScope.Attached"/>
    /// beside the config's declared mounts; the default ignores them.
    /// </summary>
    Task<IQuiesced?> QuiesceAsync(QuiesceScope scope, CancellationToken ct) => QuiesceAsync(scope.Volumes, ct);
}

/// <summary>
/// What one quiesce is about: the <see cref="Volumes"/> about to be cut, and the mounts found on them
/// without a declaration (<see cref="Attached"/>: nbdfuse attachments of the server's exports of
/// those volumes, <see cref="NbdFuseAttachments"/>).
/// </summary>
public sealed record QuiesceScope(IReadOnlySet<string> Volumes, IReadOnlyList<AgentMountEntry> Attached)
{
    /// <summary><paramref name="config"/> with <see cref="Attached"/> as declared mounts, for this quiesce alone.</summary>
    public AgentConfig Apply(AgentConfig config) => Attached.Count == 0 ? config : config with { Mounts = [.. config.Mounts, .. Attached] };
}

/// <summary>
/// What one plugin quiesced. <see cref="ResumeAsync"/> must be safe to call exactly once from any
/// thread, and must not throw for what is already resumed: the deadline and the server's call race.
/// </summary>
public interface IQuiesced
{
    /// <summary>"filesystem" or "application" (<see cref="Tidemark.Api.ConsistencyLevel"/>).</summary>
    string Consistency { get; }

    /// <summary>
    /// True for what applications stand on (the file-system freeze): its "filesystem" does not pull
    /// down the level an application part claims over it, and alone it makes the host's level
    /// "filesystem". Every other part speaks for an application, at its <see cref="Consistency"/>,
    /// and the host is only as consistent as the weakest of them (<see cref="QuiesceSessions.HostLevel"/>).
    /// </summary>
    bool UnderApplications => false;

    /// <summary>What was quiesced, for the snapshot's label: "/srv/data (ext4)".</summary>
    IReadOnlyList<string> Items { get; }

    /// <summary>Backup labels by cluster, known after <see cref="ResumeAsync"/> (PostgreSQL); empty for others.</summary>
    IReadOnlyDictionary<string, string> BackupLabels => Empty;

    /// <summary>What the plugin's hooks printed so far (scripts), for the server's event log; empty for others.</summary>
    IReadOnlyList<string> Output => [];

    /// <summary>
    /// How long writes were blocked: from the first freeze to the end of the last thaw, known after
    /// <see cref="ResumeAsync"/> (file systems); null for plugins that block no writes themselves.
    /// </summary>
    double? FrozenSeconds => null;

    private static readonly Dictionary<string, string> Empty = [];

    Task ResumeAsync();
}
