using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// A Dovecot of the recovery's own over a snapshot's mail store (docs/adr/0012): for formats whose
/// flags, keywords and dates live only in Dovecot's indexes (mdbox), Dovecot itself reads them. It
/// runs from a config file in the recovery's work directory, serves IMAP on a free loopback port to
/// one random password (so nobody else on the host reads the mail meanwhile), one account per user
/// directory found in the store with that directory's owner as mail uid. Stopped by its PID.
/// </summary>
public sealed partial class PrivateDovecot : IAsyncDisposable
{
    private const int SigTerm = 15;
    private const int SigKill = 9;

    private readonly Process _process;

    private PrivateDovecot(Process process, string directory, int port, string password, IReadOnlyList<string> users)
    {
        _process = process;
        Directory_ = directory;
        Port = port;
        Password = password;
        Users = users;
    }

    public int Port { get; }

    /// <summary>Every user's password on this private instance.</summary>
    public string Password { get; }

    public IReadOnlyList<string> Users { get; }

    private string Directory_ { get; }

    public string LogFile => Path.Combine(Directory_, "dovecot.log");

    /// <param name="directory">config, sockets and log; short (unix socket paths are limited to 108 bytes)</param>
    /// <param name="mailRoot">the directory with one home per user, on a writable overlay of the snapshot</param>
    /// <param name="mailLocation">Dovecot's mail_location relative to a home, e.g. "mdbox:~/mdbox"</param>
    /// <param name="storeDirectory">the directory in a home that marks a user of this store ("mdbox")</param>
    public static async Task<PrivateDovecot> StartAsync(string directory, string mailRoot, string mailLocation, string storeDirectory, CancellationToken ct)
    {
        var dovecot = HostCommand.Require("dovecot", "dovecot-imapd");
        Directory.CreateDirectory(directory);
        var password = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
        var accounts = new List<string>();
        var users = new List<string>();
        foreach (var home in Directory.EnumerateDirectories(mailRoot).Order(StringComparer.Ordinal))
        {
            var user = Path.GetFileName(home);
            if (!Directory.Exists(Path.Combine(home, storeDirectory)) || user.Any(c => c is ':' or '\n' or '%' || char.IsWhiteSpace(c)))
            {
                continue;
            }

            var owner = await HostCommand.RunAsync("stat", ["-c", "%u:%g", home], TimeSpan.FromSeconds(10), ct);
            var ids = owner.StandardOutput.Trim().Split(':');
            if (owner.ExitCode != 0 || ids.Length != 2 || ids[0] == "0")
            {
                // Dovecot refuses uid 0 for mail; a root-owned home is not a mailbox it ever served.
                continue;
            }

            users.Add(user);
            accounts.Add($"{user}:{{PLAIN}}{password}:{ids[0]}:{ids[1]}::{home}::");
        }

        if (users.Count == 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"no user directory with {storeDirectory}/ under {mailRoot}; check --mail-root and --format");
        }

        var accountsFile = Path.Combine(directory, "accounts");
        await File.WriteAllLinesAsync(accountsFile, accounts, ct);

        // Dovecot's auth process runs as its own group (Debian: dovecot) and must read the accounts.
        File.SetUnixFileMode(accountsFile, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
        var chown = await HostCommand.RunAsync("chown", ["root:dovecot", accountsFile], TimeSpan.FromSeconds(10), ct);
        if (chown.ExitCode != 0)
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"cannot give Dovecot its accounts file ({chown.Describe()}); is dovecot-core installed (it creates the dovecot group)?");
        }
        var port = FreePort();
        var config = Path.Combine(directory, "dovecot.conf");
        await File.WriteAllTextAsync(config, $$"""
            # Written by tidemark recover for one recovery; nothing from /etc/dovecot.
            base_dir = {{directory}}/run
            state_dir = {{directory}}/state
            instance_name = {{Path.GetFileName(Path.GetDirectoryName(directory))}}
            log_path = {{directory}}/dovecot.log
            protocols = imap
            listen = 127.0.0.1
            ssl = no
            disable_plaintext_auth = no
            auth_mechanisms = plain
            auth_username_format = %u
            first_valid_uid = 1
            first_valid_gid = 1
            mail_location = {{mailLocation}}
            mail_fsync = never
            namespace inbox {
              inbox = yes
              separator = /
            }
            passdb {
              driver = passwd-file
              args = scheme=PLAIN {{accountsFile}}
            }
            userdb {
              driver = passwd-file
              args = {{accountsFile}}
            }
            service imap-login {
              inet_listener imap {
                address = 127.0.0.1
                port = {{port}}
              }
              inet_listener imaps {
                port = 0
              }
            }

            """, ct);

        var start = new ProcessStartInfo(dovecot)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };

        // -F: the master stays in the foreground, so the PID we hold is the one to stop.
        foreach (var argument in (string[])["-c", config, "-F"])
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start) ?? throw new RecoveryException(RecoveryFailure.BadInput, "could not start dovecot");
        process.StandardInput.Close();
        var instance = new PrivateDovecot(process, directory, port, password, users);
        var deadline = Stopwatch.StartNew();
        while (!await AcceptsAsync(port, ct))
        {
            if (process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(20))
            {
                var output = process.HasExited ? await process.StandardError.ReadToEndAsync(ct) : string.Empty;
                var log = File.Exists(instance.LogFile) ? await File.ReadAllTextAsync(instance.LogFile, ct) : string.Empty;
                await instance.DisposeAsync();
                throw new RecoveryException(RecoveryFailure.BadInput, $"the recovery's own Dovecot did not start: {output.Trim()} {log.Trim()}");
            }

            await Task.Delay(50, ct);
        }

        return instance;
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, SigTerm);
            try
            {
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(15));
            }
            catch (TimeoutException)
            {
                _ = Kill(_process.Id, SigKill);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10)).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }

        _process.Dispose();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static async Task<bool> AcceptsAsync(int port, CancellationToken ct)
    {
        try
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(IPAddress.Loopback, port, ct);
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>The last lines of Dovecot's log, for an error message (the work directory goes away with the recovery).</summary>
    public string LogTail()
    {
        try
        {
            return File.Exists(LogFile) ? string.Join(" | ", File.ReadLines(LogFile).TakeLast(5)) : "(no log)";
        }
        catch (IOException)
        {
            return "(log unreadable)";
        }
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"dovecot pid {_process.Id} on 127.0.0.1:{Port}");

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
