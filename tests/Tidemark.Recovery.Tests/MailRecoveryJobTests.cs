using Tidemark.Api;
using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

/// <summary>
/// A recovery job's request as the agent receives it from the server: the wire may choose what to
/// search and where to deliver, never a path on the host or a credential.
/// </summary>
public sealed class MailRecoveryJobTests : IDisposable
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("tidemark-recovery-job-");

    public void Dispose() => _directory.Delete(recursive: true);

    private string ExportRoot => Path.Combine(_directory.FullName, "recovered");

    [Fact]
    public void ToRequest_Imap_MasterUserFromTheHostsFile_FilterAndFolderCarried()
    {
        Secret(MailRecoveryJob.ImapMasterFile, "admin:secret\n");

        var request = MailRecoveryJob.ToRequest(
            Request(new MailTargetDto(MailTargetDto.Imap, "mail.example.org:1143", "none", Into: "Recovered/x"), new MailFilterDto(["alice"], Subject: "invoice", Since: DateTimeOffset.UnixEpoch)),
            _directory.FullName,
            ExportRoot,
            TextWriter.Null);

        var imap = Assert.IsType<MailDestination.Imap>(request.Destination);
        Assert.Equal("mail.example.org:1143 as admin", imap.Restorer.ToString());
        Assert.Equal("Recovered/x", imap.Into);
        Assert.Equal(["alice"], request.Filter.Users);
        Assert.Equal("invoice", request.Filter.Subject);
        Assert.Equal(DateTimeOffset.UnixEpoch, request.Filter.Since);
        Assert.Equal("vol@snap", request.Source);
    }

    [Fact]
    public void ToRequest_ImapWithoutTheHostsMasterFile_RefusedNamingTheFile()
    {
        var error = Assert.Throws<RecoveryException>(() => MailRecoveryJob.ToRequest(
            Request(new MailTargetDto(MailTargetDto.Imap, "127.0.0.1:143"), new MailFilterDto(["alice"])), _directory.FullName, ExportRoot, TextWriter.Null));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.Contains(Path.Combine(_directory.FullName, MailRecoveryJob.ImapMasterFile), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ToRequest_Export_LandsUnderTheHostsExportRoot()
    {
        var request = MailRecoveryJob.ToRequest(Request(new MailTargetDto(MailTargetDto.Export, ExportName: "hold-2026.11", ExportFormat: "mbox")), _directory.FullName, ExportRoot, TextWriter.Null);

        var export = Assert.IsType<MailDestination.Export>(request.Destination);
        Assert.Equal(Path.Combine(ExportRoot, "hold-2026.11"), export.Directory);
        Assert.True(export.Mbox);
    }

    [Theory]
    [InlineData("export", null, "../etc", "export name")]
    [InlineData("export", null, "a/b", "export name")]
    [InlineData("export", null, ".hidden", "export name")]
    [InlineData("export", null, "/root", "export name")]
    [InlineData("imap", null, null, "HOST:PORT")]
    [InlineData("imap", "host:99999", null, "is not HOST:PORT")]
    [InlineData("smtp", "127.0.0.1:25", null, "recipient")]
    [InlineData("pop3", null, null, "is not list, imap, smtp or export")]
    public void ToRequest_BadTarget_RefusedBeforeAnythingIsMounted(string kind, string? address, string? exportName, string message)
    {
        Secret(MailRecoveryJob.ImapMasterFile, "admin:secret\n");

        var error = Assert.Throws<RecoveryException>(() => MailRecoveryJob.ToRequest(
            Request(new MailTargetDto(kind, address, ExportName: exportName), new MailFilterDto(["alice"])), _directory.FullName, ExportRoot, TextWriter.Null));

        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("file:///etc/shadow")]
    [InlineData("")]
    public void ToRequest_NotAnNbdUrl_Refused(string url)
    {
        var error = Assert.Throws<RecoveryException>(() => MailRecoveryJob.ToRequest(Request(new MailTargetDto()) with { ExportUrl = url }, _directory.FullName, ExportRoot, TextWriter.Null));

        Assert.Contains("nbd://", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("../alice")]
    [InlineData("a/b")]
    [InlineData("..")]
    public void ToRequest_UserThatIsAPath_Refused(string user)
    {
        var error = Assert.Throws<RecoveryException>(() => MailRecoveryJob.ToRequest(Request(new MailTargetDto(), new MailFilterDto([user])), _directory.FullName, ExportRoot, TextWriter.Null));

        Assert.Contains("mailbox names", error.Message, StringComparison.Ordinal);
    }

    private static AgentMailRecoveryRequest Request(MailTargetDto target, MailFilterDto? filter = null) =>
        new("0123abcd", "vol@snap", DateTimeOffset.UnixEpoch, "nbd://127.0.0.1:10809/recover-vol-x", filter ?? new MailFilterDto(), target, "/", "auto");

    private void Secret(string name, string text)
    {
        var file = Path.Combine(_directory.FullName, name);
        File.WriteAllText(file, text);
        File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }
}
