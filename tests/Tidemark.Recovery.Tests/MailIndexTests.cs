using System.Globalization;
using System.Security.Cryptography;
using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

/// <summary>
/// The per-snapshot header index (docs/adr/0012, "Header index"): built by the first search, then
/// searched instead of the files, with every candidate confirmed from its file; never used for
/// another snapshot (a reused name), never trusted when torn, edited or of another version.
/// </summary>
public sealed class MailIndexTests : IDisposable
{
    private static readonly DateTimeOffset Received = new(2026, 10, 20, 9, 15, 0, TimeSpan.Zero);
    private static readonly MailIndexKey Monday = new(Guid.Parse("6f1c9a52-7d1e-4f0b-9a53-0d1e2f3a4b5c"), "mail@daily", Received, "", "Maildir");
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("tidemark-mailindex-");

    private string Store => Path.Combine(_work.FullName, "store");

    private string Cache => Path.Combine(_work.FullName, "cache");

    public void Dispose() => _work.Delete(recursive: true);

    [Fact]
    public async Task Search_SecondSearchOfTheSnapshot_OpensOnlyTheMatches()
    {
        var total = BuildLarge(users: 3, perUser: 40);
        var filter = new MailSearchFilter { From = "SENDER7@" };

        var first = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday));
        var indexed = await first.SearchAsync(filter, default);
        Assert.Equal(6, indexed.Count);
        Assert.Equal(total + indexed.Count, first.MessagesRead);

        // Everything but the matches gone: a search that opened any other message could not tell.
        foreach (var file in Directory.EnumerateFiles(Store, "*", SearchOption.AllDirectories).Where(f => !indexed.Any(m => m.Path == f)))
        {
            File.Delete(file);
        }

        var second = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday));
        var found = await second.SearchAsync(filter, default);

        Assert.Equal(indexed.Count, second.MessagesRead);
        Assert.Equal(indexed.Select(m => (m.User, m.Folder, m.Path, m.MessageId, m.InternalDate)), found.Select(m => (m.User, m.Folder, m.Path, m.MessageId, m.InternalDate)));
    }

    [Fact]
    public async Task Search_SnapshotNameReused_IndexOfTheOldSnapshotNotUsed()
    {
        BuildLarge(users: 1, perUser: 10);
        await new MaildirStore(Store, index: new MailIndexCache(Cache, Monday)).SearchAsync(new MailSearchFilter(), default);

        // The snapshot is deleted and one taken later under the same name: other content, other id.
        var later = Monday with { SnapshotId = Guid.NewGuid(), CreatedAt = Monday.CreatedAt.AddDays(1) };
        MaildirStoreTests.Write(Path.Combine(Store, "u000", "Maildir"), "cur", "1795600000.M99P1.vm:2,S", Received.AddDays(1), "<new@x>", "arrived later", "late@example.org", "u000@example.test");
        var reused = new MaildirStore(Store, index: new MailIndexCache(Cache, later));

        var found = await reused.SearchAsync(new MailSearchFilter { MessageId = "new@x" }, default);

        Assert.Equal(["<new@x>"], found.Select(m => m.MessageId));
        Assert.Equal(11 + 1, reused.MessagesRead);
        Assert.NotEqual(new MailIndexCache(Cache, Monday).PathOf("u000"), new MailIndexCache(Cache, later).PathOf("u000"));
        Assert.NotEqual(Monday.DirectoryName, (Monday with { MailRoot = "home" }).DirectoryName);
    }

    public static TheoryData<string> Damages => ["flipped byte", "truncated", "foreign version", "other snapshot's file", "empty"];

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task Search_UnusableIndex_RebuiltFromTheFilesNotTrusted(string damage)
    {
        var total = BuildLarge(users: 1, perUser: 30);
        var cache = new MailIndexCache(Cache, Monday);
        await new MaildirStore(Store, index: cache).SearchAsync(new MailSearchFilter(), default);
        var path = cache.PathOf("u000");
        var bytes = await File.ReadAllBytesAsync(path);
        switch (damage)
        {
            case "flipped byte":
                bytes[bytes.Length / 2] ^= 0x20;
                break;
            case "truncated":
                bytes = bytes[..(bytes.Length - 100)];
                break;
            case "foreign version":
                bytes[4] = 99;
                SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32)).CopyTo(bytes.AsSpan(bytes.Length - 32));
                break;
            case "other snapshot's file":
                // A whole, valid index, but of another snapshot, copied in place of this one's.
                var other = new MailIndexCache(Cache, Monday with { SnapshotId = Guid.NewGuid() });
                other.Save("u000", [new MailIndexEntry("INBOX", "cur/1.M1.vm:2,S", Received.UtcTicks, "<forged@x>", "forged", "sender7@example.org", "u000", false)]);
                bytes = await File.ReadAllBytesAsync(other.PathOf("u000"));
                break;
            default:
                bytes = [];
                break;
        }

        await File.WriteAllBytesAsync(path, bytes);
        var log = new StringWriter(CultureInfo.InvariantCulture);
        var rebuilt = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday), log: log);

        var found = await rebuilt.SearchAsync(new MailSearchFilter { From = "sender7@" }, default);

        Assert.Equal(2, found.Count);
        Assert.DoesNotContain(found, m => m.MessageId == "<forged@x>");
        Assert.Equal(total + found.Count, rebuilt.MessagesRead);
        Assert.Contains("not used", log.ToString(), StringComparison.Ordinal);

        // ...and the rebuilt index is whole again.
        var again = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday));
        Assert.Equal(2, (await again.SearchAsync(new MailSearchFilter { From = "sender7@" }, default)).Count);
        Assert.Equal(2, again.MessagesRead);
    }

    [Fact]
    public async Task Search_IndexSaysMatchFileSaysNot_TheFileWins()
    {
        BuildLarge(users: 1, perUser: 10);
        var first = await new MaildirStore(Store, index: new MailIndexCache(Cache, Monday)).SearchAsync(new MailSearchFilter { From = "sender7@" }, default);
        var hit = Assert.Single(first);
        File.WriteAllText(hit.Path, "From: someone-else@example.org\nMessage-ID: <changed@x>\nSubject: changed\n\nbody\n");

        var found = await new MaildirStore(Store, index: new MailIndexCache(Cache, Monday)).SearchAsync(new MailSearchFilter { From = "sender7@" }, default);

        Assert.Empty(found);
    }

    [Theory]
    [InlineData("folder=Archive/2026")]
    [InlineData("message-id=<b1@x>")]
    [InlineData("to=cc-person")]
    [InlineData("since=2026-10-20T09:15:00Z")]
    [InlineData("has-attachment")]
    [InlineData("user=alice")]
    public async Task Search_Indexed_SameAnswerAsTheFullScanWithFlagsAndKeywords(string criterion)
    {
        MaildirStoreTests.Build(Store);
        var (key, _, value) = criterion.Partition('=');
        var filter = key switch
        {
            "folder" => new MailSearchFilter { Folder = value },
            "message-id" => new MailSearchFilter { MessageId = value },
            "to" => new MailSearchFilter { To = value },
            "since" => new MailSearchFilter { Since = DateTimeOffset.Parse(value, CultureInfo.InvariantCulture) },
            "user" => new MailSearchFilter { Users = [value] },
            _ => new MailSearchFilter { HasAttachment = true },
        };
        var scanned = await new MaildirStore(Store).SearchAsync(filter, default);
        await new MaildirStore(Store, index: new MailIndexCache(Cache, Monday)).SearchAsync(new MailSearchFilter(), default);

        var indexed = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday));
        var found = await indexed.SearchAsync(filter, default);

        Assert.NotEmpty(found);
        Assert.Equal(scanned, found, (a, b) => a with { Flags = [], Keywords = [] } == b with { Flags = [], Keywords = [] } && a.Flags.SequenceEqual(b.Flags) && a.Keywords.SequenceEqual(b.Keywords));

        // Only the messages whose top-level headers allow an attachment are read whole.
        Assert.Equal(key == "has-attachment" ? 1 : found.Count, indexed.MessagesRead);
    }

    [Fact]
    public void IndexOf_WithoutTheSnapshotsIdOrDirectory_NoIndex()
    {
        var request = new MailRecoveryRequest("mail@daily", null, new MailSearchFilter(), new MailDestination.List(), IndexDirectory: Cache);

        Assert.Null(MailRecovery.IndexOf(request, "mail@daily", null, Received, ""));
        Assert.Null(MailRecovery.IndexOf(request, "mail@daily", Guid.Empty, Received, ""));
        Assert.Null(MailRecovery.IndexOf(request with { IndexDirectory = null }, "mail@daily", Monday.SnapshotId, Received, ""));
        Assert.Equal(Monday, MailRecovery.IndexOf(request, "mail@daily", Monday.SnapshotId, Received, "")!.Key);
    }

    [Theory]
    [InlineData("cur/1.M1.vm:2,S", true)]
    [InlineData(".Archive.2026/new/2.M2.vm", true)]
    [InlineData("../other/Maildir/cur/1", false)]
    [InlineData("/etc/shadow", false)]
    [InlineData("cur//1", false)]
    [InlineData("cur/./1", false)]
    public void IsSafeRelativePath_OnlyInsideTheMaildir(string path, bool safe) =>
        Assert.Equal(safe, MailIndexFile.IsSafeRelativePath(path));

    [Fact]
    public async Task Save_IndexFilesArePrivate()
    {
        BuildLarge(users: 1, perUser: 2);
        var cache = new MailIndexCache(Cache, Monday);

        await new MaildirStore(Store, index: cache).SearchAsync(new MailSearchFilter(), default);

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(cache.PathOf("u000")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Cache));
        Assert.Single(Directory.GetFiles(Path.GetDirectoryName(cache.PathOf("u000"))!));
    }

    [Fact]
    public async Task BuildIndex_Cancelled_SavesNoIndex_NextSearchReadsTheFiles()
    {
        var total = BuildLarge(users: 3, perUser: 20);
        using var cancel = new CancellationTokenSource();

        // Cancelled once the build has listed the messages and starts reading them (as a job cancel
        // reaches the agent mid-build): no user's index may look complete afterwards.
        var log = new CancelOnLine("indexing the headers", cancel);
        var building = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday), log: log);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => building.BuildIndexAsync(cancel.Token));

        Assert.True(!Directory.Exists(Cache) || Directory.GetFiles(Cache, "*.idx", SearchOption.AllDirectories).Length == 0);
        var next = new MaildirStore(Store, index: new MailIndexCache(Cache, Monday));
        Assert.Equal(3, (await next.BuildIndexAsync(default)).Users);
        Assert.Equal(total, next.MessagesRead);
    }

    /// <summary>A log that cancels when a line containing <paramref name="text"/> is written.</summary>
    private sealed class CancelOnLine(string text, CancellationTokenSource cancel) : StringWriter(CultureInfo.InvariantCulture)
    {
        public override void WriteLine(string? value)
        {
            base.WriteLine(value);
            if (value?.Contains(text, StringComparison.Ordinal) == true)
            {
                cancel.Cancel();
            }
        }

        public override Task WriteLineAsync(string? value)
        {
            WriteLine(value);
            return Task.CompletedTask;
        }
    }

    /// <summary>USERS users with PERUSER messages each in INBOX and Archive; every twentieth from sender7.</summary>
    private int BuildLarge(int users, int perUser)
    {
        var n = 0;
        for (var u = 0; u < users; u++)
        {
            var maildir = Path.Combine(Store, $"u{u:D3}", "Maildir");
            for (var i = 0; i < perUser; i++, n++)
            {
                var from = n % 20 == 7 ? "Seven <sender7@example.org>" : $"sender{n % 20}@example.org";
                MaildirStoreTests.Write(maildir, i % 2 == 0 ? "cur" : ".Archive/cur", $"17955{n:D5}.M{n}P1.vm:2,S", Received.AddMinutes(-n), $"<m{n}@x>", $"message {n}", from, $"u{u:D3}@example.test");
            }
        }

        return n;
    }
}
