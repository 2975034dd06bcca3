using Tidemark.Api;
using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

/// <summary>What an operator types: credentials, endpoints, dates, paths; and where exports land.</summary>
public sealed class RecoveryInputTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("tidemark-recovery-");

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public void MasterCredentials_OwnerOnlyFile_UserAndPasswordWithColons()
    {
        var file = Secret("admin:pa:ss word\n");

        var master = MasterCredentials.Load(file);

        Assert.Equal(new MasterCredentials("admin", "pa:ss word"), master);
        Assert.DoesNotContain("pa:ss", master.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void MasterCredentials_WorldReadableFile_RefusedWithChmodAdvice()
    {
        var file = Secret("admin:pw\n");
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);

        var error = Assert.Throws<RecoveryException>(() => MasterCredentials.Load(file));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.Contains("chmod 600", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("admin")]
    [InlineData(":pw")]
    [InlineData("admin:")]
    [InlineData("")]
    public void MasterCredentials_NotUserColonPassword_Refused(string content) =>
        Assert.Equal(RecoveryFailure.BadInput, Assert.Throws<RecoveryException>(() => MasterCredentials.Load(Secret(content))).Failure);

    [Theory]
    [InlineData("mail.example.org:993", "mail.example.org", 993)]
    [InlineData("127.0.0.1", "127.0.0.1", 143)]
    [InlineData("[::1]:10143", "::1", 10143)]
    [InlineData("[::1]", "::1", 143)]
    public void ImapEndpoint_HostAndPort_Parsed(string text, string host, int port) =>
        Assert.Equal((host, port), ImapEndpoint.Parse(text));

    [Theory]
    [InlineData("host:0")]
    [InlineData("host:65536")]
    [InlineData("host:imap")]
    [InlineData(":143")]
    [InlineData("::1:143")]
    [InlineData("[::1]143")]
    public void ImapEndpoint_Malformed_BadInput(string text) =>
        Assert.Equal(RecoveryFailure.BadInput, Assert.Throws<RecoveryException>(() => ImapEndpoint.Parse(text)).Failure);

    [Fact]
    public void ParseDate_DayOrOffsetTime_Parsed()
    {
        Assert.Equal(new DateTimeOffset(2026, 10, 22, 14, 30, 0, TimeSpan.FromHours(1)), SnapshotSelector.ParseDate("2026-10-22T14:30:00+01:00", "--before"));
        Assert.Equal(new DateTime(2026, 10, 22), SnapshotSelector.ParseDate("2026-10-22", "--before").DateTime);
    }

    [Theory]
    [InlineData("yesterday")]
    [InlineData("22/10/2026")]
    [InlineData("2026-13-01")]
    public void ParseDate_NotADate_BadInputNamingTheOption(string text)
    {
        var error = Assert.Throws<RecoveryException>(() => SnapshotSelector.ParseDate(text, "--since"));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.StartsWith("--since", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Newest_SnapshotsAroundTheDate_NewestStrictlyBefore()
    {
        var day = new DateTimeOffset(2026, 10, 22, 0, 0, 0, TimeSpan.Zero);
        SnapshotDto Snapshot(string name, int hours) => new($"mail@{name}", "mail", name, day.AddHours(hours), 0, false, false, null, null, null);

        var newest = SnapshotSelector.Newest([Snapshot("a", -48), Snapshot("c", 0), Snapshot("b", -2), Snapshot("d", 5)], day);

        Assert.Equal("b", newest?.Name);
        Assert.Null(SnapshotSelector.Newest([Snapshot("d", 5)], day));
    }

    [Theory]
    [InlineData("/", "")]
    [InlineData("/srv/mail/", "srv/mail")]
    [InlineData("./homes", "homes")]
    public void RelativeMailRoot_InsideTheFileSystem_Relative(string root, string expected) =>
        Assert.Equal(expected, MailRecovery.RelativeMailRoot(root));

    [Fact]
    public void RelativeMailRoot_DotDot_Refused() =>
        Assert.Equal(RecoveryFailure.BadInput, Assert.Throws<RecoveryException>(() => MailRecovery.RelativeMailRoot("/srv/../../etc")).Failure);

    [Theory]
    [InlineData("alice", "alice")]
    [InlineData("..", "_.")]
    [InlineData(".hidden", "_hidden")]
    [InlineData("a/b\\c d", "a_b_c_d")]
    [InlineData("", "_")]
    public void Safe_PathComponent_NoTraversalOrSeparators(string part, string expected) =>
        Assert.Equal(expected, EmlExporter.Safe(part));

    [Fact]
    public async Task Export_TwiceAndHostileFolder_OneFileInsideTheDirectoryWithReceivedDate()
    {
        var source = Path.Combine(_directory.FullName, "msg");
        await File.WriteAllTextAsync(source, "Message-ID: <m@x>\nSubject: s\n\nbody\n");
        var received = new DateTimeOffset(2026, 10, 20, 9, 15, 0, TimeSpan.Zero);
        var message = new FoundMessage("alice", "../../escape/..", source, received, null, "", "", "s", "<m@x>", 10, [], [], null);
        var target = Path.Combine(_directory.FullName, "out");

        var first = Assert.Single(await EmlExporter.ExportAsync([message], target, default));
        var second = Assert.Single(await EmlExporter.ExportAsync([message], target, default));

        Assert.Equal(RestoreOutcome.Restored, first.Result);
        Assert.Equal(RestoreOutcome.Duplicate, second.Result);
        Assert.StartsWith(Path.Combine(target, "alice") + "/", first.Target, StringComparison.Ordinal);
        Assert.EndsWith(".eml", first.Target, StringComparison.Ordinal);
        Assert.Equal(await File.ReadAllTextAsync(source), await File.ReadAllTextAsync(first.Target));
        Assert.Equal(received.UtcDateTime, File.GetLastWriteTimeUtc(first.Target));
        Assert.Single(Directory.GetFiles(target, "*", SearchOption.AllDirectories));
    }

    [Theory]
    [InlineData("$Important", true)]
    [InlineData("NonJunk", true)]
    [InlineData("two words", false)]
    [InlineData("br(ace", false)]
    [InlineData("", false)]
    public void IsAtom_Keywords_OnlyWhatImapCanCarry(string keyword, bool atom) =>
        Assert.Equal(atom, ImapRestorer.IsAtom(keyword));

    private string Secret(string content)
    {
        var file = Path.Combine(_directory.FullName, Guid.NewGuid().ToString("N"));
        File.WriteAllText(file, content);
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return file;
    }
}

public sealed class StoreFormatTests : IDisposable
{
    private readonly DirectoryInfo _root = Directory.CreateTempSubdirectory("tidemark-format-");

    public void Dispose() => _root.Delete(recursive: true);

    [Theory]
    [InlineData("alice/mdbox bob/mdbox lost+found", MailStoreFormat.Mdbox)]
    [InlineData("alice/Maildir bob/Maildir", MailStoreFormat.Maildir)]
    [InlineData("alice/mdbox bob/Maildir", MailStoreFormat.Maildir)]
    [InlineData("lost+found", MailStoreFormat.Maildir)]
    public void Detect_HomesOfTheStore_FormatFromWhatTheyHold(string layout, MailStoreFormat expected)
    {
        foreach (var directory in layout.Split(' '))
        {
            Directory.CreateDirectory(Path.Combine(_root.FullName, directory));
        }

        Assert.Equal(expected, MailRecovery.Detect(_root.FullName, MaildirStore.DefaultMaildirName));
    }
}
