using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Tidemark.Agent;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// A Postfix (Debian's postfix) of the test's own: main.cf and master.cf in a private config
/// directory with its own queue and data directories, SMTP on a free loopback port, every recipient
/// in example.test handed to a Dovecot over LMTP, no chroot, its log in a file. Never the system's
/// Postfix: started with `postfix -c DIR start`, stopped with `postfix -c DIR stop` and then by the
/// master's PID if it is still there, also when the test fails.
/// </summary>
internal sealed class PostfixInstance : IAsyncDisposable
{
    private readonly string _directory;

    private PostfixInstance(string directory, int smtpPort, int masterPid)
    {
        _directory = directory;
        SmtpPort = smtpPort;
        MasterPid = masterPid;
    }

    public int SmtpPort { get; }

    public int MasterPid { get; }

    public string ConfigDirectory => Path.Combine(_directory, "etc");

    public string LogFile => Path.Combine(_directory, "postfix.log");

    public static void Require()
    {
        if (HostRequirements.FindOnPath("postfix") is null && !File.Exists("/usr/sbin/postfix"))
        {
            Assert.Fail("this machine cannot run the mail agent test; missing Postfix (scripts/install-deps installs postfix)");
        }
    }

    /// <summary>
    /// Starts it on a free SMTP port. Another process (test assemblies run in parallel) can take the
    /// port between the look and Postfix's bind: then Postfix stops at once with "Address already in
    /// use" and the start is tried again on another port, up to three times.
    /// </summary>
    public static async Task<PostfixInstance> StartAsync(string directory, int lmtpPort)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await StartOnceAsync(directory, lmtpPort, FreePort.Find());
            }
            catch (PortTakenException) when (attempt < 3)
            {
                // the next attempt picks another port
            }
        }
    }

    private sealed class PortTakenException(string message) : Exception(message);

    private static async Task<PostfixInstance> StartOnceAsync(string directory, int lmtpPort, int smtpPort)
    {
        var etc = Directory.CreateDirectory(Path.Combine(directory, "etc")).FullName;
        var spool = Directory.CreateDirectory(Path.Combine(directory, "spool")).FullName;
        var data = Directory.CreateDirectory(Path.Combine(directory, "data")).FullName;
        File.Delete(Path.Combine(directory, "postfix.log")); // this attempt's log alone

        // master.lock lives in the data directory, which must belong to the mail owner.
        await ProcessRunner.CheckAsync(AttachedExport.Tool("chown"), "postfix", data);
        await File.WriteAllTextAsync(Path.Combine(etc, "main.cf"), $"""
            compatibility_level = 3.6
            queue_directory = {spool}
            data_directory = {data}
            command_directory = /usr/sbin
            daemon_directory = /usr/lib/postfix/sbin
            meta_directory = /etc/postfix
            shlib_directory = /usr/lib/postfix
            mail_owner = postfix
            setgid_group = postdrop
            myhostname = mail.example.test
            mydomain = example.test
            myorigin = $mydomain
            mydestination =
            inet_interfaces = 127.0.0.1
            inet_protocols = ipv4
            mynetworks = 127.0.0.0/8
            relayhost =
            virtual_mailbox_domains = example.test
            virtual_transport = lmtp:inet:127.0.0.1:{lmtpPort}
            smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
            local_recipient_maps =
            alias_maps =
            alias_database =
            biff = no
            smtp_host_lookup = native
            lmtp_host_lookup = native
            smtputf8_enable = no
            maillog_file = {directory}/postfix.log
            maillog_file_prefixes = {directory}
            multi_instance_enable = no

            """);
        await File.WriteAllTextAsync(Path.Combine(etc, "master.cf"), $"""
            127.0.0.1:{smtpPort} inet n - n - - smtpd
            pickup    unix  n       -       n       60      1       pickup
            cleanup   unix  n       -       n       -       0       cleanup
            qmgr      unix  n       -       n       300     1       qmgr
            rewrite   unix  -       -       n       -       -       trivial-rewrite
            bounce    unix  -       -       n       -       0       bounce
            defer     unix  -       -       n       -       0       bounce
            trace     unix  -       -       n       -       0       bounce
            verify    unix  -       -       n       -       1       verify
            flush     unix  n       -       n       1000?   0       flush
            proxymap  unix  -       -       n       -       -       proxymap
            smtp      unix  -       -       n       -       -       smtp
            relay     unix  -       -       n       -       -       smtp
            showq     unix  n       -       n       -       -       showq
            error     unix  -       -       n       -       -       error
            retry     unix  -       -       n       -       -       error
            discard   unix  -       -       n       -       -       discard
            lmtp      unix  -       -       n       -       -       lmtp
            anvil     unix  -       -       n       -       1       anvil
            scache    unix  -       -       n       -       1       scache
            postlog   unix-dgram n  -       n       -       1       postlogd

            """);

        var start = await ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), "/usr/sbin/postfix", "-c", etc, "start");
        var pidFile = Path.Combine(spool, "pid", "master.pid");
        try
        {
            var deadline = Stopwatch.StartNew();
            while (!(File.Exists(pidFile) && await MailWire.AcceptsAsync(smtpPort)))
            {
                if (start.ExitCode != 0 || deadline.Elapsed > TimeSpan.FromSeconds(30))
                {
                    var log = File.Exists(Path.Combine(directory, "postfix.log")) ? await File.ReadAllTextAsync(Path.Combine(directory, "postfix.log")) : "(no log)";
                    var message = $"postfix did not start (exit {start.ExitCode}): {start.StandardOutput}{start.StandardError}\n{log}";
                    throw log.Contains($"port {smtpPort}: Address already in use", StringComparison.Ordinal)
                        ? new PortTakenException(message)
                        : new InvalidOperationException(message);
                }

                await Task.Delay(100);
            }

            return new PostfixInstance(directory, smtpPort, await ReadPidAsync(pidFile));
        }
        catch
        {
            // Whatever half started, this instance's own stop ends it (never a system Postfix: -c ours).
            await ProcessRunner.RunAsync(TimeSpan.FromSeconds(30), "/usr/sbin/postfix", "-c", etc, "stop");
            throw;
        }
    }

    /// <summary>One message over SMTP (RFC 5321), as another mail server would send it.</summary>
    public async Task SendAsync(string from, string recipient, string message)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("127.0.0.1", SmtpPort);
        using var stream = tcp.GetStream();
        using var reader = new StreamReader(stream, Encoding.ASCII);
        await using var writer = new StreamWriter(stream, Encoding.ASCII) { NewLine = "\r\n", AutoFlush = true };
        await MailWire.ExpectReplyAsync(reader, "220", "SMTP");
        await writer.WriteLineAsync("EHLO sender.example.org");
        await MailWire.ExpectReplyAsync(reader, "250", "SMTP");
        await writer.WriteLineAsync($"MAIL FROM:<{from}>");
        await MailWire.ExpectReplyAsync(reader, "250", "SMTP");
        await writer.WriteLineAsync($"RCPT TO:<{recipient}>");
        await MailWire.ExpectReplyAsync(reader, "250", "SMTP");
        await writer.WriteLineAsync("DATA");
        await MailWire.ExpectReplyAsync(reader, "354", "SMTP");
        var text = new StringBuilder();
        foreach (var line in message.ReplaceLineEndings("\n").Split('\n'))
        {
            text.Append(line.StartsWith('.') ? "." + line : line).Append("\r\n");
        }

        await writer.WriteAsync(text.Append(".\r\n").ToString());
        await MailWire.ExpectReplyAsync(reader, "250", "SMTP");
        await writer.WriteLineAsync("QUIT");
    }

    /// <summary>The state (/proc/PID/stat) of this instance's queue manager, the master's qmgr child: 'T' while stopped; null when none runs.</summary>
    public char? QueueManagerState() =>
        ProcStat.Children(MasterPid, new HashSet<string>(["qmgr"], StringComparer.Ordinal)).Where(p => p.State != ProcStat.Zombie).Select(p => (char?)p.State).FirstOrDefault();

    /// <summary>The queue as `postqueue -p` prints it.</summary>
    public async Task<string> QueueAsync() =>
        (await ProcessRunner.RunAsync("/usr/sbin/postqueue", "-c", ConfigDirectory, "-p")).StandardOutput;

    public async ValueTask DisposeAsync()
    {
        // A test that failed during a hold leaves the queue manager stopped: the master's SIGTERM would stay pending in it.
        foreach (var qmgr in ProcStat.Children(MasterPid, new HashSet<string>(["qmgr"], StringComparer.Ordinal)))
        {
            Signals.TrySend(qmgr.Pid, 18);
        }

        await ProcessRunner.RunAsync(TimeSpan.FromSeconds(30), "/usr/sbin/postfix", "-c", ConfigDirectory, "stop");
        var deadline = Stopwatch.StartNew();
        while (Directory.Exists($"/proc/{MasterPid}") && !IsZombie(MasterPid))
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(15))
            {
                Signals.TrySend(MasterPid, Signals.SigKill);
                break;
            }

            await Task.Delay(100);
        }
    }

    private static bool IsZombie(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('Z');
        }
        catch (IOException)
        {
            return true;
        }
    }

    /// <summary>By cat: .NET's shared flock on open conflicts with the master's exclusive lock on its pid file.</summary>
    private static async Task<int> ReadPidAsync(string file) =>
        int.Parse((await ProcessRunner.CheckAsync(AttachedExport.Tool("cat"), file)).StandardOutput.Trim(), CultureInfo.InvariantCulture);
}
