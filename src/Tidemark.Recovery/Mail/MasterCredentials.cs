namespace Tidemark.Recovery.Mail;

/// <summary>
/// The IMAP master user (Dovecot: a passdb with master=yes) that may log in as any mailbox owner.
/// Read from a file or the environment, never from the command line, where `ps` and shell history
/// would show the password to everyone on the host.
/// </summary>
public sealed record MasterCredentials(string User, string Password)
{
    public const string EnvironmentVariable = "TIDEMARK_IMAP_MASTER";

    public override string ToString() => $"{User}:***";

    /// <summary>From <paramref name="file"/> if given, else from TIDEMARK_IMAP_MASTER; both hold USER:PASSWORD.</summary>
    public static MasterCredentials Load(string? file)
    {
        string text;
        string source;
        if (file is not null)
        {
            source = file;
            text = ReadSecretLine(file, "master user file");
        }
        else
        {
            source = $"${EnvironmentVariable}";
            text = Environment.GetEnvironmentVariable(EnvironmentVariable)
                ?? throw new RecoveryException(RecoveryFailure.BadInput, $"restoring over IMAP needs the master user: --master-user-file FILE (one line USER:PASSWORD) or ${EnvironmentVariable}=USER:PASSWORD");
        }

        return Parse(text.TrimEnd('\r', '\n'), source);
    }

    internal static MasterCredentials Parse(string text, string source, string whose = "the IMAP master user")
    {
        var colon = text.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0 || colon == text.Length - 1)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{source} must hold USER:PASSWORD ({whose})");
        }

        return new MasterCredentials(text[..colon].Trim(), text[(colon + 1)..]);
    }

    /// <summary>
    /// A login (USER:PASSWORD) from a file, for a server other than IMAP's master user (an SMTP
    /// submission login); the same rules: the file must exist and not be readable by others.
    /// </summary>
    public static MasterCredentials LoadLogin(string file, string what) =>
        Parse(ReadSecretLine(file, what), file, what);

    /// <summary>The first non-empty line of a secret file, refused when others on the host may read it.</summary>
    private static string ReadSecretLine(string file, string what)
    {
        if (!File.Exists(file))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{what} {file} does not exist; it holds one line USER:PASSWORD");
        }

        if (!OperatingSystem.IsWindows() && (File.GetUnixFileMode(file) & (UnixFileMode.OtherRead | UnixFileMode.OtherWrite)) != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"{what} {file} is readable by every user on this host; 'chmod 600 {file}' first");
        }

        return File.ReadLines(file).FirstOrDefault(l => l.Trim().Length > 0) ?? string.Empty;
    }
}
