using System.Globalization;
using System.Runtime.Versioning;
using Microsoft.Extensions.Logging;

namespace Tidemark.Agent;

/// <summary>
/// A mail server (Postfix delivering into Dovecot) around the cut (ADR 0015): for each configured
/// mail store whose mail root sits on a volume being cut, Dovecot's indexes are first brought up to
/// date while mail still flows (`doveadm index`, bounded by the entry's IndexBeforeHoldSeconds),
/// then Postfix's deliveries are stopped (<see cref="PostfixHold"/>: the queue manager is stopped and
/// the deliveries already under way finish first), then the index run is repeated for what arrived
/// in between, then the file-system plugin freezes the mount. At resume (after the thaw) the queue
/// manager continues and delivers what arrived meanwhile. Mail keeps being accepted over SMTP
/// throughout: it waits in Postfix's queue, never in a half-written file.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed class MailPlugin(AgentConfig config, ILogger logger, QuiesceJournal? journal = null) : IQuiescePlugin
{
    /// <summary>Indexing what arrived since the last snapshot: seconds; a store that needs more is not one to pause for.</summary>
    private static readonly TimeSpan _doveadmTimeout = TimeSpan.FromSeconds(60);

    public string Name => "mail";

    public Task<IQuiesced?> QuiesceAsync(IReadOnlySet<string> volumes, CancellationToken ct) => QuiesceAsync(new QuiesceScope(volumes, []), ct);

    public async Task<IQuiesced?> QuiesceAsync(QuiesceScope scope, CancellationToken ct)
    {
        var effective = scope.Apply(config);
        var held = new List<PostfixHold>();
        var items = new List<string>();
        try
        {
            foreach (var store in effective.Mail)
            {
                if (effective.VolumeOf(LocalMounts.Normalize(store.MailRoot)) is not { } volume || !scope.Volumes.Contains(volume))
                {
                    continue;
                }

                if (store.Dovecot is { } early)
                {
                    // While mail still flows: the bulk of the indexing (every message delivered since the
                    // last snapshot) is done here, so the run inside the hold only covers the messages
                    // delivered in the moment between the two, not the seconds since the last snapshot.
                    await IndexBeforeHoldAsync(store, early, ct);
                }

                if (store.Postfix is { } postfix)
                {
                    held.Add(await PostfixHold.HoldAsync(postfix, store.Transports, logger, ct, journal));
                }

                if (store.Dovecot is { } dovecot)
                {
                    // Delivery has stopped: the indexes written now describe every message in the
                    // store, so a view opens without a resync of a half-known mailbox.
                    await IndexAsync(store, dovecot, "doveadm index", ct);
                }

                items.Add($"mail: {Describe(store)}");
            }
        }
        catch
        {
            await new Held(held, items).ResumeAsync();
            throw;
        }

        return items.Count == 0 ? null : new Held(held, items);
    }

    /// <summary>
    /// The index run before the hold, cut at the entry's bound: it only moves work out of the hold (the
    /// run inside it indexes whatever this one did not), so past the bound the hold goes on without it
    /// rather than wait (once 14.8 s under load). doveadm killed midway leaves Dovecot's indexes as a
    /// crashed IMAP process would: its transaction log is replayed or the mailbox rescanned at the next
    /// open, and the run inside the hold does exactly that. A bound of 0 skips the run.
    /// </summary>
    private async Task IndexBeforeHoldAsync(AgentMailEntry store, string dovecot, CancellationToken ct)
    {
        if (store.IndexBeforeHoldSeconds <= 0)
        {
            return;
        }

        var bound = TimeSpan.FromSeconds(store.IndexBeforeHoldSeconds);
        using var cut = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cut.CancelAfter(bound);
        try
        {
            await IndexAsync(store, dovecot, "doveadm index (before hold)", cut.Token);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            AgentLog.IndexBeforeHoldCut(logger, store.Name, bound.TotalSeconds);
        }
    }

    /// <summary>`doveadm index -A '*'`: every mailbox of every user brought into Dovecot's indexes.</summary>
    private async Task IndexAsync(AgentMailEntry store, string dovecot, string step, CancellationToken ct)
    {
        var clock = new StepClock(logger, "hold", store.Name);
        var index = await PostfixHold.RunAsync("doveadm", "dovecot-core", ["-c", dovecot, "index", "-A", "*"], _doveadmTimeout, ct);
        clock.Lap(step);
        if (index.ExitCode != 0)
        {
            throw new StorageException(StorageError.IoError, $"mail store {store.Name}: doveadm index failed ({index.Describe()}); check the Dovecot config {dovecot}");
        }
    }

    /// <summary>"postfix+dovecot", and the store's name when it is not the default one.</summary>
    private static string Describe(AgentMailEntry store)
    {
        var what = string.Join('+', new[] { store.Postfix is null ? null : "postfix", store.Dovecot is null ? null : "dovecot" }.OfType<string>());
        return store.Name == AgentMailEntry.DefaultName ? what : string.Create(CultureInfo.InvariantCulture, $"{what} {store.Name}");
    }

    private sealed class Held(List<PostfixHold> held, IReadOnlyList<string> items) : IQuiesced
    {
        private int _resumed;

        public string Consistency => "application";

        public IReadOnlyList<string> Items => items;

        public async Task ResumeAsync()
        {
            if (Interlocked.Exchange(ref _resumed, 1) != 0)
            {
                return;
            }

            List<string>? failures = null;
            for (var i = held.Count - 1; i >= 0; i--)
            {
                try
                {
                    await held[i].ReleaseAsync();
                }
                catch (StorageException ex)
                {
                    (failures ??= []).Add(ex.Message);
                }
            }

            if (failures is not null)
            {
                throw new StorageException(StorageError.IoError, string.Join("; ", failures));
            }
        }
    }
}
