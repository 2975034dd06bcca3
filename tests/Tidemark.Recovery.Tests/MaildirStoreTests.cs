using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

/// <summary>The store reader over a Maildir++ tree built in a temporary directory, as Dovecot lays it out.</summary>
public sealed class MaildirStoreTests : IDisposable
{
    private static readonly DateTimeOffset Received = new(2026, 10, 20, 9, 15, 0, TimeSpan.Zero);
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("tidemark-maildir-");

    public void Dispose() => _root.Delete(recursive: true);

    [Fact]
    public async Task Search_NoFilter_EveryMessageOfEveryUserAndFolderWithItsState()
    {
        Build();

        var all = await new MaildirStore(_root.FullName).SearchAsync(new MailSearchFilter(), default);

        Assert.Equal(
            ["alice INBOX <a1@x>", "alice INBOX <a2@x>", "alice Archive/2026 <a3@x>", "alice Été <a4@x>", "bob INBOX <b1@x>"],
            all.Select(m => $"{m.User} {m.Folder} {m.MessageId}").OrderBy(s => s[..5], StringComparer.Ordinal).ThenBy(s => s[^5..], StringComparer.Ordinal));
        var a1 = all.Single(m => m.MessageId == "<a1@x>");
        Assert.Equal([@"\Flagged", @"\Seen"], a1.Flags);
        Assert.Equal(["$Important"], a1.Keywords);
        Assert.Equal(Received, a1.InternalDate);
        Assert.Equal(777, a1.SizeBytes);
        Assert.Equal("Quarterly figures Q3", a1.Subject);
        Assert.Contains("finance@example.org", a1.From, StringComparison.Ordinal);
        Assert.Equal(new DateTimeOffset(2026, 10, 20, 9, 10, 0, TimeSpan.Zero), a1.Date);
        Assert.Empty(all.Single(m => m.MessageId == "<a2@x>").Flags);
    }

    [Theory]
    [InlineData("user=alice", "<a1@x> <a2@x> <a3@x> <a4@x>")]
    [InlineData("folder=Archive/2026", "<a3@x>")]
    [InlineData("folder=inbox", "<a1@x> <a2@x> <b1@x>")]
    [InlineData("message-id=a2@x", "<a2@x>")]
    [InlineData("message-id=<b1@x>", "<b1@x>")]
    [InlineData("subject=QUARTERLY", "<a1@x>")]
    [InlineData("from=LEGAL@example", "<a3@x>")]
    [InlineData("to=bob@", "<b1@x>")]
    [InlineData("to=cc-person", "<a2@x>")]
    [InlineData("since=2026-10-20T09:15:00Z", "<a1@x> <a4@x>")]
    [InlineData("until=2026-10-20T09:15:00Z", "<a2@x> <a3@x> <b1@x>")]
    [InlineData("has-attachment", "<a3@x>")]
    [InlineData("user=carol", "")]
    public async Task Search_OneCriterion_OnlyTheMatches(string criterion, string expected)
    {
        Build();
        var (key, _, value) = criterion.Partition('=');
        var filter = key switch
        {
            "user" => new MailSearchFilter { Users = [value] },
            "folder" => new MailSearchFilter { Folder = value },
            "message-id" => new MailSearchFilter { MessageId = value },
            "subject" => new MailSearchFilter { Subject = value },
            "from" => new MailSearchFilter { From = value },
            "to" => new MailSearchFilter { To = value },
            "since" => new MailSearchFilter { Since = DateTimeOffset.Parse(value) },
            "until" => new MailSearchFilter { Until = DateTimeOffset.Parse(value) },
            _ => new MailSearchFilter { HasAttachment = true },
        };

        var found = await new MaildirStore(_root.FullName).SearchAsync(filter, default);

        Assert.Equal(expected, string.Join(' ', found.Select(m => m.MessageId).Order(StringComparer.Ordinal)));
        Assert.All(found, m => Assert.Equal(key == "has-attachment" ? true : null, m.HasAttachment));
    }

    [Fact]
    public async Task Search_SymbolicLinksAndIndexCache_NeverFollowedOrRead()
    {
        Build();
        var secret = Path.Combine(_root.FullName, "outside.txt");
        await File.WriteAllTextAsync(secret, "Message-ID: <secret@host>\nSubject: host file\n\n");
        var inbox = Path.Combine(_root.FullName, "alice", "Maildir");
        File.CreateSymbolicLink(Path.Combine(inbox, "cur", "1.link.host:2,S"), secret);
        Directory.CreateSymbolicLink(Path.Combine(inbox, ".Linked"), Path.Combine(_root.FullName, "bob", "Maildir"));
        Directory.CreateSymbolicLink(Path.Combine(_root.FullName, "mallory"), Path.Combine(_root.FullName, "bob"));

        // An expunged message's headers stay in Dovecot's cache: not the truth, never searched.
        await File.WriteAllTextAsync(Path.Combine(inbox, "dovecot.index.cache"), "Message-ID: <expunged@x>\n");

        var all = await new MaildirStore(_root.FullName).SearchAsync(new MailSearchFilter(), default);

        Assert.DoesNotContain(all, m => m.MessageId is "<secret@host>" or "<expunged@x>");
        Assert.DoesNotContain(all, m => m.Folder == "Linked" || m.User == "mallory");
        Assert.Equal(["alice", "bob"], new MaildirStore(_root.FullName).Users());
    }

    /// <summary>
    /// A named pipe in cur/ (nodev does not stop FIFOs) would block the read that opens it forever, and
    /// with it the search or index build and its cancel: only regular files with content are opened.
    /// </summary>
    [Fact]
    public async Task Search_NamedPipeInCur_SkippedNotOpened()
    {
        Build();
        var inbox = Path.Combine(_root.FullName, "alice", "Maildir");
        var mkfifo = System.Diagnostics.Process.Start("mkfifo", [Path.Combine(inbox, "cur", "2.fifo.host:2,S")])!;
        await mkfifo.WaitForExitAsync();
        Assert.Equal(0, mkfifo.ExitCode);

        // The bound only keeps a regression from hanging the suite; it measures nothing.
        var all = await new MaildirStore(_root.FullName).SearchAsync(new MailSearchFilter(), default).WaitAsync(TimeSpan.FromMinutes(2));
        var index = new MailIndexCache(Path.Combine(_root.FullName, "index-cache"), new MailIndexKey(Guid.NewGuid(), "mail@x", Received, "", "Maildir"));
        var built = await new MaildirStore(_root.FullName, index: index).BuildIndexAsync(default).WaitAsync(TimeSpan.FromMinutes(2));

        Assert.DoesNotContain(all, m => m.Path.Contains("fifo", StringComparison.Ordinal));
        Assert.Contains(all, m => m.User == "alice");
        Assert.Equal(2, built.Users);
    }

    /// <summary>
    /// A header-only read asks for <see cref="MaildirStore.HeaderReadBytes"/> at a time without
    /// read-ahead: headers far longer than that (a long Received chain) are still read to their end,
    /// many messages are searched at once, and a body is never taken for a header.
    /// </summary>
    [Fact]
    public async Task Search_HeadersLongerThanOneRead_ManyMessages_EachMatchedOnItsLastHeader()
    {
        var cur = Directory.CreateDirectory(Path.Combine(_root.FullName, "carol", "Maildir", "cur")).FullName;
        var hops = string.Concat(Enumerable.Range(0, 60).Select(i => $"Received: from hop{i}.example.org by hop{i + 1}.example.org with ESMTPS id {new string('x', 120)}\n"));
        Assert.True(hops.Length > 2 * MaildirStore.HeaderReadBytes);
        var count = 3 * MaildirStore.ReadsInFlight;
        for (var i = 0; i < count; i++)
        {
            var subject = i % 3 == 0 ? $"needle {i}" : $"hay {i}";
            await File.WriteAllTextAsync(Path.Combine(cur, $"17955349{i:D2}.M{i}P1.vm:2,S"), $"{hops}From: a@example.org\nMessage-ID: <m{i}@x>\nSubject: {subject}\n\nSubject: needle in the body {i}\n");
        }

        var found = await new MaildirStore(_root.FullName).SearchAsync(new MailSearchFilter { Users = ["carol"], Subject = "NEEDLE" }, default);

        Assert.Equal(Enumerable.Range(0, count).Where(i => i % 3 == 0).Select(i => $"<m{i}@x>").Order(StringComparer.Ordinal), found.Select(m => m.MessageId).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Search_MailRootWithoutUsers_ClearError()
    {
        var missing = Path.Combine(_root.FullName, "nope");

        var error = await Assert.ThrowsAsync<RecoveryException>(() => new MaildirStore(missing).SearchAsync(new MailSearchFilter(), default));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.Contains("--mail-root", error.Message, StringComparison.Ordinal);
    }

    private void Build() => Build(_root.FullName);

    /// <summary>Two users, four folders (one in modified UTF-7), flags, keywords, an attachment, a Cc.</summary>
    internal static void Build(string root)
    {
        var alice = Path.Combine(root, "alice", "Maildir");
        Write(alice, "cur", "1795534881.M1P1.vm,S=777,W=790:2,FSb", Received, "<a1@x>", "Quarterly figures Q3", "Finance <finance@example.org>", "alice@example.test");
        Write(alice, "new", "1795534882.M2P1.vm", Received.AddDays(-1), "<a2@x>", "hello", "Bob <bob@example.test>", "alice@example.test", cc: "Cc Person <cc-person@example.org>");
        File.WriteAllLines(Path.Combine(alice, "dovecot-keywords"), ["0 $Label1", "1 $Important"]);
        Write(alice, ".Archive.2026/cur", "1795534883.M3P1.vm:2,S", Received.AddDays(-3), "<a3@x>", "Signed contract", "Legal <legal@example.org>", "alice@example.test", attachment: true);
        Write(alice, ".&AMk-t&AOk-/cur", "1795534884.M4P1.vm:2,", Received.AddDays(1), "<a4@x>", "summer", "x@example.org", "alice@example.test");
        Directory.CreateDirectory(Path.Combine(alice, "tmp"));
        Directory.CreateDirectory(Path.Combine(alice, ".NotAFolder"));
        Write(Path.Combine(root, "bob", "Maildir"), "cur", "1795534885.M5P1.vm:2,S", Received.AddDays(-2), "<b1@x>", "for bob", "alice@example.test", "bob@example.test");
        Directory.CreateDirectory(Path.Combine(root, "lost+found"));
    }

    internal static void Write(string maildir, string sub, string name, DateTimeOffset received, string messageId, string subject, string from, string to, string? cc = null, bool attachment = false)
    {
        var directory = Directory.CreateDirectory(Path.Combine(maildir, sub)).FullName;
        var headers = $"From: {from}\nTo: {to}\n{(cc is null ? "" : $"Cc: {cc}\n")}Subject: {subject}\nMessage-ID: {messageId}\nDate: Tue, 20 Oct 2026 09:10:00 +0000\nMIME-Version: 1.0\n";
        var body = attachment
            ? "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=\"c.pdf\"\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--b--\n"
            : "Content-Type: text/plain\n\nbody\n";
        var path = Path.Combine(directory, name);
        File.WriteAllText(path, headers + body);
        File.SetLastWriteTimeUtc(path, received.UtcDateTime);
    }
}

internal static class StringPartition
{
    public static (string Key, string Separator, string Value) Partition(this string text, char separator)
    {
        var at = text.IndexOf(separator, StringComparison.Ordinal);
        return at < 0 ? (text, "", "") : (text[..at], separator.ToString(), text[(at + 1)..]);
    }
}
