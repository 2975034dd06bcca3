using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// A Dovecot (Debian's dovecot-imapd + dovecot-lmtpd) run by the test from its own config file, every
/// path under the test's directory, IMAP and LMTP on free loopback ports. Users alice/alicepw and
/// bob/bobpw; master user admin/adminpw. Mail is owned by the system user vmail (created when
/// missing; Dovecot refuses uid 0 for mail), homes are MAILROOT/USER with a Maildir or an mdbox.
/// Stopped by PID with SIGTERM (its children follow), killed if it does not stop.
/// </summary>
internal sealed class DovecotInstance : IAsyncDisposable
{
    public const string MailUser = "vmail";
    public const string MasterUser = "admin";
    public const string MasterPassword = "adminpw";

    private readonly Process _process;
    private readonly string _directory;

    private DovecotInstance(Process process, string directory, int imapPort, int lmtpPort)
    {
        _process = process;
        _directory = directory;
        ImapPort = imapPort;
        LmtpPort = lmtpPort;
    }

    public int ImapPort { get; }

    public int LmtpPort { get; }

    public string LogFile => Path.Combine(_directory, "dovecot.log");

    public static async Task RequireAsync()
    {
        var missing = new List<string>();
        if (HostRequirements.FindOnPath("dovecot") is null || !File.Exists("/usr/lib/dovecot/imap") || !File.Exists("/usr/lib/dovecot/lmtp"))
        {
            missing.Add("Dovecot with IMAP and LMTP (scripts/install-deps installs dovecot-imapd and dovecot-lmtpd)");
        }

        if (!File.ReadLines("/etc/group").Any(l => l.StartsWith("dovecot:", StringComparison.Ordinal)))
        {
            missing.Add("the dovecot group (created by Debian's dovecot-core package)");
        }

        if (missing.Count > 0)
        {
            Assert.Fail("this machine cannot run the mail recovery tests; missing:\n  " + string.Join("\n  ", missing));
        }

        if (!File.ReadLines("/etc/passwd").Any(l => l.StartsWith(MailUser + ":", StringComparison.Ordinal)))
        {
            await ProcessRunner.CheckAsync(AttachedExport.Tool("useradd"), "--system", "--home-dir", "/nonexistent", "--no-create-home", "--shell", "/usr/sbin/nologin", MailUser);
        }
    }

    /// <param name="directory">config, runtime sockets and logs; keep it short (unix socket paths are limited to 108 bytes)</param>
    /// <param name="format">maildir or mdbox</param>
    public static async Task<DovecotInstance> StartAsync(string directory, string mailRoot, string format = "maildir")
    {
        Directory.CreateDirectory(directory);
        await ProcessRunner.CheckAsync(AttachedExport.Tool("chown"), $"{MailUser}:{MailUser}", mailRoot);
        File.SetUnixFileMode(mailRoot, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
        var (imapPort, lmtpPort) = (FreePort.Find(), FreePort.Find());
        var users = Path.Combine(directory, "users");
        var masters = Path.Combine(directory, "master-users");
        await File.WriteAllTextAsync(users, "alice:{PLAIN}alicepw::::::\nbob:{PLAIN}bobpw::::::\n");
        await File.WriteAllTextAsync(masters, $"{MasterUser}:{{PLAIN}}{MasterPassword}\n");
        foreach (var file in (string[])[users, masters])
        {
            await ProcessRunner.CheckAsync(AttachedExport.Tool("chown"), "root:dovecot", file);
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        }

        var config = Path.Combine(directory, "dovecot.conf");
        await File.WriteAllTextAsync(config, $$"""
            # Self-contained: nothing from /etc/dovecot. Blocks need a newline after '{'.
            base_dir = {{directory}}/run
            state_dir = {{directory}}/state
            instance_name = tidemark-{{Path.GetFileName(Path.GetDirectoryName(directory))}}
            log_path = {{directory}}/dovecot.log
            protocols = imap lmtp
            listen = 127.0.0.1
            ssl = no
            disable_plaintext_auth = no
            auth_mechanisms = plain login
            auth_username_format = %Ln
            auth_master_user_separator = *
            first_valid_uid = 100
            mail_location = {{(format == "mdbox" ? "mdbox:~/mdbox" : "maildir:~/Maildir")}}
            namespace inbox {
              inbox = yes
              separator = /
            }
            passdb {
              driver = passwd-file
              master = yes
              args = scheme=PLAIN username_format=%n {{masters}}
              pass = yes
            }
            passdb {
              driver = passwd-file
              args = scheme=PLAIN username_format=%n {{users}}
            }
            userdb {
              driver = passwd-file
              args = username_format=%n {{users}}
              default_fields = uid={{MailUser}} gid={{MailUser}} home={{mailRoot}}/%n
            }
            service imap-login {
              inet_listener imap {
                address = 127.0.0.1
                port = {{imapPort}}
              }
              inet_listener imaps {
                port = 0
              }
            }
            service lmtp {
              inet_listener lmtp {
                address = 127.0.0.1
                port = {{lmtpPort}}
              }
            }

            """);

        // -F: the master stays in the foreground, so the process we hold is the one to signal.
        var process = ProcessRunner.Start(AttachedExport.Tool("dovecot"), ["-c", config, "-F"], redirectOutput: true);
        var instance = new DovecotInstance(process, directory, imapPort, lmtpPort);
        var deadline = Stopwatch.StartNew();
        while (!(await MailWire.AcceptsAsync(imapPort) && await MailWire.AcceptsAsync(lmtpPort)))
        {
            if (process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(20))
            {
                var log = File.Exists(instance.LogFile) ? await File.ReadAllTextAsync(instance.LogFile) : "(no log)";
                await instance.DisposeAsync();
                throw new InvalidOperationException($"dovecot did not start: {await process.StandardError.ReadToEndAsync()}\n{log}");
            }

            await Task.Delay(50);
        }

        return instance;
    }

    /// <summary>Delivers one message over LMTP (RFC 2033), as a mail server's MTA would.</summary>
    public async Task DeliverAsync(string from, string recipient, string message)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", LmtpPort);
        using var stream = tcp.GetStream();
        using var reader = new StreamReader(stream, Encoding.ASCII);
        await using var writer = new StreamWriter(stream, Encoding.ASCII) { NewLine = "\r\n", AutoFlush = true };
        await MailWire.ExpectReplyAsync(reader, "220", "LMTP");
        await writer.WriteLineAsync("LHLO test.example.org");
        await MailWire.ExpectReplyAsync(reader, "250", "LMTP");
        await writer.WriteLineAsync($"MAIL FROM:<{from}>");
        await MailWire.ExpectReplyAsync(reader, "250", "LMTP");
        await writer.WriteLineAsync($"RCPT TO:<{recipient}>");
        await MailWire.ExpectReplyAsync(reader, "250", "LMTP");
        await writer.WriteLineAsync("DATA");
        await MailWire.ExpectReplyAsync(reader, "354", "LMTP");
        foreach (var text in message.ReplaceLineEndings("\n").Split('\n'))
        {
            await writer.WriteLineAsync(text.StartsWith('.') ? "." + text : text);
        }

        await writer.WriteLineAsync(".");
        await MailWire.ExpectReplyAsync(reader, "250", "LMTP");
        await writer.WriteLineAsync("QUIT");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            Signals.TrySend(_process.Id, Signals.SigTerm);
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            }
            catch (TimeoutException)
            {
                Signals.TrySend(_process.Id, Signals.SigKill);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }

        _process.Dispose();
    }
}
