using Tidemark.Api;

namespace Tidemark.Recovery.Mail;

/// <summary>Where found messages go: nowhere (a dry run that lists them), an IMAP server, an SMTP server, or files.</summary>
public abstract record MailDestination
{
    /// <summary>For the recovery's event: where the messages went.</summary>
    public abstract string Describe();

    public sealed record List : MailDestination
    {
        public override string Describe() => "list (dry run)";
    }

    public sealed record Imap(ImapRestorer Restorer, string? Into) : MailDestination
    {
        public override string Describe() => $"imap {Restorer}" + (Into is null ? " (original folders)" : $" into {Into}");
    }

    public sealed record Smtp(SmtpSender Sender) : MailDestination
    {
        public override string Describe() => $"smtp {Sender}";
    }

    /// <param name="Mbox">one mbox file per folder (mboxrd) instead of one .eml file per message</param>
    public sealed record Export(string Directory, bool Mbox = false) : MailDestination
    {
        public override string Describe() => $"export {Directory} ({(Mbox ? "mbox" : "eml")})";
    }
}

/// <summary>How the store keeps its mail: Maildir (read directly) or mdbox (read through a private Dovecot).</summary>
public enum MailStoreFormat
{
    /// <summary>mdbox when a user directory holds mdbox/ and none holds Maildir/, else Maildir.</summary>
    Auto,
    Maildir,
    Mdbox,
}

/// <param name="MailRoot">the directory in the snapshot's file system that holds the users' homes</param>
/// <param name="IndexDirectory">where snapshots' header indexes are kept (<see cref="MailIndexCache"/>); null: no index, every search reads the files</param>
public sealed record MailRecoveryRequest(
    string Source,
    DateTimeOffset? Before,
    MailSearchFilter Filter,
    MailDestination Destination,
    string MailRoot = "/",
    string MaildirName = MaildirStore.DefaultMaildirName,
    MailStoreFormat Format = MailStoreFormat.Auto,
    string? IndexDirectory = null);

/// <param name="Timings">where the seconds went, step by step (attach, mount, search, deliver, teardown)</param>
public sealed record MailRecoveryResult(
    string Snapshot,
    DateTimeOffset SnapshotCreatedAt,
    IReadOnlyList<FoundMessage> Matches,
    IReadOnlyList<RestoreOutcome> Outcomes,
    IReadOnlyList<string> TeardownProblems,
    StepTimings? Timings = null);

/// <summary>
/// One recovery, start to end: pick the snapshot, mount a view of it on this host, search its mail
/// store, put the matches where asked, and take everything down again whatever happened.
/// </summary>
public static class MailRecovery
{
    /// <summary>Where recoveries make their work directories unless <see cref="WorkRootEnvironmentVariable"/> says otherwise.</summary>
    public const string DefaultWorkRoot = "/run/tidemark-recovery";

    public const string WorkRootEnvironmentVariable = "TIDEMARK_RECOVERY_WORK_DIR";

    public static async Task<MailRecoveryResult> RunAsync(TidemarkClient client, MailRecoveryRequest request, TextWriter log, CancellationToken ct)
    {
        RelativeMailRoot(request.MailRoot);
        MountedSnapshot.CheckHost();
        var snapshot = await SnapshotSelector.SelectAsync(client, request.Source, request.Before, ct);
        await log.WriteLineAsync($"recovering from {snapshot.Address} (taken {snapshot.CreatedAt:yyyy-MM-dd HH:mm:ss zzz})");

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var timings = new StepTimings();
        var work = new DirectoryInfo(CreateWorkDirectory());
        IReadOnlyList<FoundMessage> matches = [];
        IReadOnlyList<RestoreOutcome> outcomes = [];
        IReadOnlyList<string> problems;
        string? error = null;
        try
        {
            var mounted = await MountedSnapshot.MountAsync(client, snapshot.Address, work.FullName, log, ct, timings);
            try
            {
                (matches, outcomes) = await SearchAndDeliverAsync(mounted, request, snapshot.Id, snapshot.CreatedAt, clock, timings, log, ct);
            }
            finally
            {
                // Cancellation (Ctrl-C) must not cut the teardown short: it runs with its own deadlines.
                problems = await TearDownAsync(mounted, clock, timings, log);
            }
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            error = e.Message;
            throw;
        }
        finally
        {
            RemoveWorkDirectory(work.FullName);
            await ReportAsync(client, snapshot.Address, request.Destination, matches, outcomes, error, log);
        }

        return new MailRecoveryResult(snapshot.Address, snapshot.CreatedAt, matches, outcomes, problems, timings);
    }

    /// <summary>
    /// The same recovery on a view someone else made and exported (a recovery job: the server made the
    /// view of the snapshot and deletes it, and records the event; docs/adr/0012): attach, mount,
    /// search, deliver, tear down here. <see cref="MailRecoveryRequest.Source"/> is the snapshot's address.
    /// </summary>
    /// <param name="snapshotId">the server's id of the snapshot, which keys its header index; null: no index</param>
    /// <param name="delivered">
    /// when given, called with the result (without teardown problems) as soon as the messages are
    /// delivered, before the teardown starts: the caller may answer then (the message is already in
    /// the mailbox) and await this method's own end, the teardown, afterwards. Not called when the
    /// recovery fails before delivering.
    /// </param>
    public static async Task<MailRecoveryResult> RunAttachedAsync(string exportUrl, MailRecoveryRequest request, DateTimeOffset snapshotCreatedAt, Guid? snapshotId, TextWriter log, CancellationToken ct, Action<MailRecoveryResult>? delivered = null)
    {
        RelativeMailRoot(request.MailRoot);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var timings = new StepTimings();
        var work = new DirectoryInfo(CreateWorkDirectory());
        try
        {
            var mounted = await MountedSnapshot.AttachAsync(exportUrl, request.Source, work.FullName, log, ct, timings);
            IReadOnlyList<FoundMessage> matches;
            IReadOnlyList<RestoreOutcome> outcomes;
            IReadOnlyList<string> problems;
            try
            {
                (matches, outcomes) = await SearchAndDeliverAsync(mounted, request, snapshotId, snapshotCreatedAt, clock, timings, log, ct);
                delivered?.Invoke(new MailRecoveryResult(request.Source, snapshotCreatedAt, matches, outcomes, [], timings));
            }
            finally
            {
                problems = await TearDownAsync(mounted, clock, timings, log);
            }

            return new MailRecoveryResult(request.Source, snapshotCreatedAt, matches, outcomes, problems, timings);
        }
        finally
        {
            RemoveWorkDirectory(work.FullName);
        }
    }

    private static async Task<(IReadOnlyList<FoundMessage> Matches, IReadOnlyList<RestoreOutcome> Outcomes)> SearchAndDeliverAsync(MountedSnapshot mounted, MailRecoveryRequest request, Guid? snapshotId, DateTimeOffset snapshotCreatedAt, System.Diagnostics.Stopwatch clock, StepTimings timings, TextWriter log, CancellationToken ct)
    {
        var mountedAt = clock.Elapsed;
        var root = RelativeMailRoot(request.MailRoot);
        var format = request.Format == MailStoreFormat.Auto ? Detect(Path.Combine(mounted.MountPoint, root), request.MaildirName) : request.Format;
        var stage = request.Destination is MailDestination.List ? null : Path.Combine(mounted.WorkDirectory, "staged");
        IReadOnlyList<FoundMessage> matches;
        PrivateDovecot? dovecot = null;
        try
        {
            IMailStore store;
            if (format == MailStoreFormat.Mdbox)
            {
                var overlay = await mounted.MountOverlayAsync(ct);
                dovecot = await PrivateDovecot.StartAsync(Path.Combine(mounted.WorkDirectory, "dc"), Path.Combine(overlay, root), "mdbox:~/mdbox", "mdbox", ct);
                await log.WriteLineAsync($"mdbox store: read through the recovery's own {dovecot}");
                store = new DovecotMailStore(dovecot, IndexOf(request with { MaildirName = DovecotMailStore.IndexStoreName }, mounted.Snapshot, snapshotId, snapshotCreatedAt, root), log);
            }
            else
            {
                store = new MaildirStore(Path.Combine(mounted.MountPoint, root), request.MaildirName, IndexOf(request, mounted.Snapshot, snapshotId, snapshotCreatedAt, root), log);
            }

            matches = await store.SearchAsync(request.Filter, stage, ct);
        }
        finally
        {
            if (dovecot is not null)
            {
                await dovecot.DisposeAsync();
            }
        }

        var searchedAt = clock.Elapsed;
        timings.Add("search", searchedAt - mountedAt);
        await log.WriteLineAsync($"{matches.Count} matching message(s) in {mounted.Snapshot} (mounted in {mountedAt.TotalSeconds:F2} s, searched in {(searchedAt - mountedAt).TotalSeconds:F2} s)");
        if (request.Destination is MailDestination.Imap { Restorer: var restorer })
        {
            restorer.Timings = timings;
        }

        IReadOnlyList<RestoreOutcome> outcomes = request.Destination switch
        {
            MailDestination.Imap imap when matches.Count > 0 => await imap.Restorer.RestoreAsync(matches, imap.Into, ct),
            MailDestination.Smtp smtp when matches.Count > 0 => await smtp.Sender.SendAsync(matches, mounted.Snapshot, ct),
            MailDestination.Export { Mbox: true } export when matches.Count > 0 => await MboxExporter.ExportAsync(matches, export.Directory, ct),
            MailDestination.Export export when matches.Count > 0 => await EmlExporter.ExportAsync(matches, export.Directory, ct),
            _ => [],
        };
        if (outcomes.Count > 0)
        {
            timings.Add("deliver", clock.Elapsed - searchedAt);
            await log.WriteLineAsync($"put back in {(clock.Elapsed - searchedAt).TotalSeconds:F2} s; {clock.Elapsed.TotalSeconds:F2} s from start");
        }

        return (matches, outcomes);
    }

    /// <summary>
    /// The snapshot's header index cache, when the request keeps one and the server named the
    /// snapshot's identity (an address alone could be a later snapshot under a reused name).
    /// </summary>
    internal static MailIndexCache? IndexOf(MailRecoveryRequest request, string address, Guid? snapshotId, DateTimeOffset createdAt, string relativeRoot) =>
        request.IndexDirectory is { Length: > 0 } directory && snapshotId is { } id && id != Guid.Empty
            ? new MailIndexCache(directory, new MailIndexKey(id, address, createdAt, relativeRoot, request.MaildirName))
            : null;

    private static async Task<IReadOnlyList<string>> TearDownAsync(MountedSnapshot mounted, System.Diagnostics.Stopwatch clock, StepTimings timings, TextWriter log)
    {
        var teardownAt = clock.Elapsed;
        await mounted.DisposeAsync();
        timings.Add("teardown", clock.Elapsed - teardownAt);
        await log.WriteLineAsync($"torn down in {(clock.Elapsed - teardownAt).TotalSeconds:F2} s; {clock.Elapsed.TotalSeconds:F2} s in all");
        return mounted.TeardownProblems;
    }

    /// <summary>
    /// Tells the server what this recovery did (or why it failed), so it is an event under the
    /// token's name (issue 23). Best effort: the messages are already where they went, so a server
    /// that cannot take the report gets a warning in the log, not a failed recovery.
    /// </summary>
    private static async Task ReportAsync(TidemarkClient client, string address, MailDestination destination, IReadOnlyList<FoundMessage> matches, IReadOnlyList<RestoreOutcome> outcomes, string? error, TextWriter log)
    {
        var lines = outcomes.Count > 0
            ? outcomes.Select(o => Line(o.Message, o.Result))
            : matches.Select(m => Line(m, "matched"));
        var report = new RecoveryReportDto(
            OneLine(destination.Describe()),
            matches.Count,
            outcomes.Count(o => o.Result == RestoreOutcome.Restored),
            outcomes.Count(o => o.Result == RestoreOutcome.Duplicate),
            outcomes.Count(o => o.Result == RestoreOutcome.Failed),
            [.. lines.Take(RecoveryReportDto.MaxMessages)],
            error is null ? null : OneLine(error));
        try
        {
            using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await client.ReportMailRecoveryAsync(address, report, deadline.Token);
        }
        catch (Exception e) when (e is TidemarkApiException or HttpRequestException or OperationCanceledException)
        {
            await log.WriteLineAsync($"warning: the server did not record this recovery as an event ({e.Message})");
        }

        static string Line(FoundMessage m, string result) => OneLine($"{m.User}/{m.Folder} {m.MessageId ?? "(no Message-ID)"}: {result}");
    }

    /// <summary>One line of at most the report's text length: header text from a snapshot is not trusted.</summary>
    internal static string OneLine(string text)
    {
        var line = new string([.. text.Select(c => char.IsControl(c) ? ' ' : c)]);
        return line.Length <= RecoveryReportDto.MaxTextLength ? line : line[..(RecoveryReportDto.MaxTextLength - 1)] + "…";
    }

    internal static MailStoreFormat Detect(string root, string maildirName)
    {
        if (!Directory.Exists(root))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{root} is not a directory in the snapshot's file system; --mail-root must name the directory that holds the users' home directories");
        }

        var homes = Directory.EnumerateDirectories(root).ToList();
        return homes.Any(h => Directory.Exists(Path.Combine(h, "mdbox"))) && !homes.Any(h => Directory.Exists(Path.Combine(h, maildirName)))
            ? MailStoreFormat.Mdbox
            : MailStoreFormat.Maildir;
    }

    /// <summary>--mail-root as a path inside the snapshot's file system; ".." could leave it, so it is refused.</summary>
    internal static string RelativeMailRoot(string mailRoot)
    {
        var parts = mailRoot.Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Any(p => p == ".."))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"--mail-root '{mailRoot}' must stay inside the snapshot's file system (no '..')");
        }

        return string.Join('/', parts.Where(p => p != "."));
    }

    /// <summary>
    /// A new work directory for one recovery (mount points, the overlay, a private Dovecot's config
    /// and sockets) under <see cref="DefaultWorkRoot"/> or the variable's root, not TMPDIR: the private
    /// Dovecot runs as the mail's owner and must enter it (<see cref="WorkDirectory"/> says how).
    /// </summary>
    internal static string CreateWorkDirectory(string? root = null) =>
        WorkDirectory.Create(
            root ?? (Environment.GetEnvironmentVariable(WorkRootEnvironmentVariable) is { Length: > 0 } configured ? configured : DefaultWorkRoot),
            "tidemark-recover-",
            WorkRootEnvironmentVariable,
            DefaultWorkRoot,
            "a private Dovecot running as the mail's owner");

    // Left in place when teardown could not unmount something under it; nothing in it matters once unmounted.
    internal static void RemoveWorkDirectory(string path) => WorkDirectory.Remove(path);
}
