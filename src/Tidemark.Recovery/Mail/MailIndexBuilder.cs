namespace Tidemark.Recovery.Mail;

/// <summary>A mail store inside a volume's file system, as an agent declares it: its name, the mail root relative to the file system's root, and "maildir" or "mdbox".</summary>
public sealed record MailIndexStore(string Name, string MailRoot, string Format);

/// <summary>What an index build did: one line per store, and the totals.</summary>
public sealed record MailIndexBuildResult(IReadOnlyList<string> Stores, int Users, long Messages, IReadOnlyList<string> TeardownProblems);

/// <summary>
/// Builds the header index of a snapshot right after it was taken (docs/adr/0012, "Index after a
/// snapshot"): attaches the view the server exported, mounts it read-only exactly as a recovery does,
/// indexes every user of each store with the same key a later search computes (snapshot id, address,
/// creation time, mail root, Maildir name), and tears everything down, also on failure or cancel.
/// </summary>
public static class MailIndexBuilder
{
    public static async Task<MailIndexBuildResult> BuildAttachedAsync(string exportUrl, string address, DateTimeOffset createdAt, Guid snapshotId, IReadOnlyList<MailIndexStore> stores, string indexDirectory, TextWriter log, CancellationToken ct)
    {
        var work = MailRecovery.CreateWorkDirectory();
        try
        {
            var mounted = await MountedSnapshot.AttachAsync(exportUrl, address, work, log, ct);
            var lines = new List<string>();
            var (users, messages) = (0, 0L);
            try
            {
                foreach (var store in stores)
                {
                    var root = MailRecovery.RelativeMailRoot(store.MailRoot);
                    var directory = Path.Combine(mounted.MountPoint, root);
                    if (!Directory.Exists(directory))
                    {
                        throw new RecoveryException(RecoveryFailure.BadInput, $"mail store {store.Name}: its mail root /{root} is not in the snapshot's file system");
                    }

                    var mdbox = store.Format == "mdbox";
                    var request = new MailRecoveryRequest(address, null, new MailSearchFilter(), new MailDestination.List(), root, mdbox ? DovecotMailStore.IndexStoreName : MaildirStore.DefaultMaildirName, IndexDirectory: indexDirectory);
                    var index = MailRecovery.IndexOf(request, address, snapshotId, createdAt, root)!;
                    int u;
                    long m;
                    if (mdbox)
                    {
                        // As a search of it would: the store's own Dovecot indexes, read through a private Dovecot on an overlay.
                        var overlay = mounted.OverlayPoint ?? await mounted.MountOverlayAsync(ct);
                        await using var dovecot = await PrivateDovecot.StartAsync(Path.Combine(mounted.WorkDirectory, $"dc-{lines.Count}"), Path.Combine(overlay, root), "mdbox:~/mdbox", "mdbox", ct);
                        (u, m) = await new DovecotMailStore(dovecot, index, log).BuildIndexAsync(ct);
                    }
                    else
                    {
                        (u, m) = await new MaildirStore(directory, request.MaildirName, index, log).BuildIndexAsync(ct);
                    }

                    (users, messages) = (users + u, messages + m);
                    lines.Add($"{store.Name}: {store.Format} /{root}, {u} user(s), {m} message(s)");
                }
            }
            finally
            {
                // Cancellation must not cut the teardown short: it runs with its own deadlines.
                await mounted.DisposeAsync();
            }

            return new MailIndexBuildResult(lines, users, messages, mounted.TeardownProblems);
        }
        finally
        {
            MailRecovery.RemoveWorkDirectory(work);
        }
    }
}
