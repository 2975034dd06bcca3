using System.Globalization;
using System.Text.Json;
using MailKit;
using MailKit.Net.Imap;
using MailKit.Search;
using MimeKit;
using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;
using Tidemark.Recovery.Mail;
using Xunit.Abstractions;

namespace Tidemark.Interop.Tests;

/// <summary>
/// Issue 23, recovery at the DR site with the primary gone: a Dovecot's Maildir on ext4 on a volume
/// replicated to a second server; the message is expunged and the deletion replicated too; then the
/// primary stops. `tidemark recover mail` against the DR server alone finds the message in the
/// replica's older snapshot (by name and by --before DATE), exports it and restores it into the mail
/// server that now serves the users; the replica is left as it was and the next sync, once the
/// primary is back, still works.
/// </summary>
public sealed class MailRecoveryDrTests(ITestOutputHelper output) : IDisposable
{
    private const string Lost = "<board-minutes-2026-11@example.org>";
    private static readonly DateTimeOffset LostReceived = new(2026, 11, 3, 16, 45, 0, TimeSpan.Zero);

    // The tool's header indexes (docs/adr/0012) are this test's own, not the host's /var/cache.
    private readonly string _indexes = Directory.CreateTempSubdirectory("tm-mailtest-index-").FullName;

    public void Dispose() => Directory.Delete(_indexes, recursive: true);

    [Fact]
    public async Task RecoverMail_AtDrSite_PrimaryStopped_FindsReplicaSnapshotByNameAndDate_RestoresAndNextSyncWorks()
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        using var temp = new TempDirectory();
        var primaryData = temp.Combine("primary");
        var primary = await ServerProcess.StartAsync(primaryData, "--store-capacity", "2G");
        await using var dr = await ServerProcess.StartAsync(temp.Combine("dr"), "--store-capacity", "2G");
        using var drClient = dr.Client();
        string withMessage;
        string afterDeletion;
        DateTimeOffset afterDeletionAt;
        try
        {
            using var home = primary.Client();
            var homeId = await home.GetIdentityAsync();
            var drId = await drClient.GetIdentityAsync();
            await home.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
            await drClient.AddPartnerAsync(new AddPartnerRequest("home", homeId.ReplicationAddress!, homeId.Fingerprint));

            await home.CreateVolumeAsync(new CreateVolumeRequest("mail", 256L << 20));
            var export = await home.CreateExportAsync(new CreateExportRequest(Target: "mail"));
            await using var live = await AttachedExport.AttachAsync(export.Url!, temp.CreateDirectory("live"), readOnly: false);
            await live.FormatExt4Async();
            await live.MountAsync("rw");
            await using (var dovecot = await DovecotInstance.StartAsync(temp.CreateDirectory("dc"), live.MountPoint))
            {
                for (var i = 0; i < 4; i++)
                {
                    await dovecot.DeliverAsync($"sender{i}@example.org", "alice@example.test", $"From: sender{i}@example.org\nTo: alice@example.test\nSubject: delivered {i}\nMessage-ID: <dr-{i}@example.org>\n\nbody {i}\n");
                }

                using (var imap = await LoginAsync(dovecot.ImapPort, "alice", "alicepw"))
                {
                    await imap.Inbox.AppendAsync(new AppendRequest(LostMessage(), MessageFlags.Seen | MessageFlags.Flagged, ["$Board"], LostReceived));
                    await imap.DisconnectAsync(true);
                }

                // Crash-consistent, as a replication snapshot of a mounted file system is.
                await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
                await home.CreateReplicaAsync(new CreateReplicaRequest("mail", "dr"));
                withMessage = (await home.SyncReplicaAsync("mail")).LastSnapshot!;

                using (var imap = await LoginAsync(dovecot.ImapPort, "alice", "alicepw"))
                {
                    await imap.Inbox.OpenAsync(FolderAccess.ReadWrite);
                    await imap.Inbox.AddFlagsAsync(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)), MessageFlags.Deleted, silent: true);
                    await imap.Inbox.ExpungeAsync();
                    await imap.DisconnectAsync(true);
                }

                await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
                var second = await home.SyncReplicaAsync("mail");
                Assert.Null(second.LastError);
                afterDeletion = second.LastSnapshot!;
            }

            afterDeletionAt = (await drClient.GetSnapshotAsync($"mail@{afterDeletion}")).CreatedAt;
        }
        finally
        {
            // The primary site is gone from here on: nothing below may need it.
            await primary.DisposeAsync();
        }

        var replicaSnapshots = (await drClient.ListSnapshotsAsync("mail")).Select(s => s.Address).Order().ToList();
        Assert.Contains($"mail@{withMessage}", replicaSnapshots);

        // The newest replicated snapshot no longer has the message; the one before it has.
        var gone = await RecoverAsync(dr, $"mail@{afterDeletion}", "--user", "alice", "--message-id", Lost);
        Assert.Empty(gone.GetProperty("matches").EnumerateArray());

        // By name: exported as .eml, byte for byte the message as it was appended.
        var emlDirectory = temp.Combine("eml");
        var byName = await RecoverAsync(dr, $"mail@{withMessage}", "--user", "alice", "--message-id", Lost, "--export", emlDirectory);
        var exported = Assert.Single(byName.GetProperty("outcomes").EnumerateArray());
        Assert.Equal("restored", exported.GetProperty("result").GetString());
        var eml = await MimeMessage.LoadAsync(exported.GetProperty("target").GetString()!);
        Assert.Equal(Lost.Trim('<', '>'), eml.MessageId);
        Assert.Equal("Board minutes November", eml.Subject);

        // By date: the newest replicated snapshot taken before the deletion was replicated, restored
        // over IMAP into the mail server that serves the users now (a fresh one at the DR site).
        var serving = temp.CreateDirectory("serving");
        await using var drDovecot = await DovecotInstance.StartAsync(temp.CreateDirectory("dc2"), serving);
        var master = temp.Combine("master");
        await File.WriteAllTextAsync(master, $"{DovecotInstance.MasterUser}:{DovecotInstance.MasterPassword}\n");
        File.SetUnixFileMode(master, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var before = afterDeletionAt.ToString("O", CultureInfo.InvariantCulture);
        var byDate = await RecoverAsync(dr, "mail", "--before", before, "--user", "alice", "--message-id", Lost, "--restore-to", "imap", "--imap", $"127.0.0.1:{drDovecot.ImapPort}", "--master-user-file", master);
        Assert.Equal($"mail@{withMessage}", byDate.GetProperty("snapshot").GetString());
        Assert.Equal("restored", Assert.Single(byDate.GetProperty("outcomes").EnumerateArray()).GetProperty("result").GetString());
        using (var imap = await LoginAsync(drDovecot.ImapPort, "alice", "alicepw"))
        {
            await imap.Inbox.OpenAsync(FolderAccess.ReadOnly);
            var uid = Assert.Single(await imap.Inbox.SearchAsync(SearchQuery.HeaderContains("Message-ID", Lost)));
            var summary = Assert.Single(await imap.Inbox.FetchAsync([uid], MessageSummaryItems.Flags | MessageSummaryItems.InternalDate));
            Assert.Equal(MessageFlags.Seen | MessageFlags.Flagged, summary.Flags!.Value & ~MessageFlags.Recent);
            Assert.Contains("$Board", summary.Keywords);
            Assert.Equal(LostReceived, summary.InternalDate);
            await imap.DisconnectAsync(true);
        }

        // The replica is as it was: no view, export or snapshot of the recovery's left, the
        // replicated snapshots unchanged, the recoveries recorded at the DR site.
        Assert.Equal(["mail"], (await drClient.ListVolumesAsync()).Select(v => v.Name));
        Assert.Empty(await drClient.ListExportsAsync());
        Assert.Equal(replicaSnapshots, (await drClient.ListSnapshotsAsync("mail")).Select(s => s.Address).Order());
        Assert.Equal(3, (await drClient.ListEventsAsync()).Count(e => e.Kind == "recovery.mail" && e.Subject?.StartsWith("mail@", StringComparison.Ordinal) == true));
        Assert.DoesNotContain("tidemark-recover-", await File.ReadAllTextAsync("/proc/self/mountinfo"), StringComparison.Ordinal);

        // The primary comes back: the next sync builds on the snapshot both sides still have.
        await using var restarted = await ServerProcess.StartAsync(primaryData, "--store-capacity", "2G");
        using var again = restarted.Client();
        var third = await again.SyncReplicaAsync("mail");
        Assert.Null(third.LastError);
        Assert.NotEqual(afterDeletion, third.LastSnapshot);
        Assert.Contains(await drClient.ListSnapshotsAsync("mail"), s => s.Name == third.LastSnapshot);
        Assert.True((await drClient.VerifyAsync()).Clean);
    }

    private static MimeMessage LostMessage() => new(
        [new MailboxAddress("Secretary", "secretary@example.org")],
        [new MailboxAddress("Alice", "alice@example.test")],
        "Board minutes November",
        new TextPart("plain") { Text = "Minutes of the November board meeting.\n" })
    {
        MessageId = Lost.Trim('<', '>'),
        Date = LostReceived.AddMinutes(-2),
    };

    private static async Task<ImapClient> LoginAsync(int port, string user, string password)
    {
        var imap = new ImapClient();
        await imap.ConnectAsync("127.0.0.1", port, MailKit.Security.SecureSocketOptions.None);
        await imap.AuthenticateAsync(user, password);
        return imap;
    }

    private async Task<JsonElement> RecoverAsync(ServerProcess server, params string[] arguments)
    {
        var result = await ProcessRunner.RunWithEnvironmentAsync(
            TimeSpan.FromSeconds(180),
            new Dictionary<string, string?> { [MailIndexCache.EnvironmentVariable] = _indexes },
            "dotnet",
            [TidemarkBuild.DllPath, "recover", "mail", .. arguments, "--json", "--server", server.Http.ToString(), "--token", server.Token]);
        output.WriteLine($"$ tidemark recover mail {string.Join(' ', arguments)} -> exit {result.ExitCode}\n{result.StandardError}");
        Assert.True(result.ExitCode == 0, $"tidemark recover mail {string.Join(' ', arguments)} exited with {result.ExitCode}\n{result.StandardOutput}\n{result.StandardError}");
        return JsonDocument.Parse(result.StandardOutput).RootElement;
    }
}
