using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

/// <summary>
/// The recovery's work directory is under a root of its own that a private Dovecot (running as the
/// mail's owner) can enter, never under a TMPDIR that may be 0700.
/// </summary>
public sealed class WorkDirectoryTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
    private readonly DirectoryInfo _temp = Directory.CreateTempSubdirectory("tidemark-workdir-");

    public void Dispose() => _temp.Delete(recursive: true);

    [Fact]
    public void CreateWorkDirectory_NewRoot_RootOpenWorkDirectoryTraversableEveryAncestorEnterable()
    {
        File.SetUnixFileMode(_temp.FullName, Private | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        var root = Path.Combine(_temp.FullName, "work-root");

        var work = MailRecovery.CreateWorkDirectory(root);

        Assert.Equal(root, Path.GetDirectoryName(work));
        Assert.StartsWith("tidemark-recover-", Path.GetFileName(work), StringComparison.Ordinal);
        Assert.Equal(Private | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute, File.GetUnixFileMode(root));
        Assert.Equal(Private | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute, File.GetUnixFileMode(work));
        for (var d = new DirectoryInfo(work); d is not null; d = d.Parent)
        {
            Assert.True((d.UnixFileMode & UnixFileMode.OtherExecute) != 0, d.FullName);
        }

        Assert.NotEqual(work, MailRecovery.CreateWorkDirectory(root));
    }

    [Fact]
    public void CreateWorkDirectory_RootUnderA0700Directory_RefusedWithTheVariableToSet()
    {
        File.SetUnixFileMode(_temp.FullName, Private);

        var error = Assert.Throws<RecoveryException>(() => MailRecovery.CreateWorkDirectory(Path.Combine(_temp.FullName, "work-root")));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.Contains(_temp.FullName, error.Message, StringComparison.Ordinal);
        Assert.Contains(MailRecovery.WorkRootEnvironmentVariable, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CreateWorkDirectory_RootWritableByOthersOrALink_Refused()
    {
        File.SetUnixFileMode(_temp.FullName, Private | UnixFileMode.OtherExecute);
        var open = Directory.CreateDirectory(Path.Combine(_temp.FullName, "open")).FullName;
        File.SetUnixFileMode(open, Private | UnixFileMode.OtherExecute | UnixFileMode.OtherWrite);
        var link = Path.Combine(_temp.FullName, "link");
        Directory.CreateSymbolicLink(link, open);

        Assert.Equal(RecoveryFailure.BadInput, Assert.Throws<RecoveryException>(() => MailRecovery.CreateWorkDirectory(open)).Failure);
        Assert.Equal(RecoveryFailure.BadInput, Assert.Throws<RecoveryException>(() => MailRecovery.CreateWorkDirectory(link)).Failure);
        Assert.Empty(Directory.EnumerateFileSystemEntries(open));
    }
}
