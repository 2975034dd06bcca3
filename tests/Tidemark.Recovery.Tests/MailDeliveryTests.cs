using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using MailKit.Security;
using MimeKit;
using SmtpServer;
using SmtpServer.Mail;
using SmtpServer.Protocol;
using SmtpServer.Storage;
using Tidemark.Recovery.Mail;
using Tidemark.TestKit;

namespace Tidemark.Recovery.Tests;

/// <summary>
/// The ways found messages leave a recovery besides IMAP: mbox files for legal hold (mboxrd, exact
/// bytes, no duplicates across runs) and mail by SMTP (each original attached unchanged to a cover
/// message), the latter against a real SMTP server implementation listening on loopback.
/// </summary>
public sealed class MailDeliveryTests : IDisposable
{
    private static readonly DateTimeOffset Received = new(2026, 10, 20, 9, 15, 0, TimeSpan.Zero);
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("tidemark-delivery-");

    public void Dispose() => _directory.Delete(recursive: true);

    [Fact]
    public async Task Mbox_FromLinesQuoted_SplitsBackIntoTheExactMessages()
    {
        var first = Message("a", "Return-Path: <bounce@lists.example>\nFrom: Ann <ann@example.com>\nMessage-ID: <a@x>\nSubject: a\n\nFrom the start of a line\n>From already quoted\nplain\n");
        var second = Message("b", "From: bob@example.com\r\nMessage-ID: <b@x>\r\nSubject: b\r\n\r\nno final line end");
        var target = Path.Combine(_directory.FullName, "out");

        var outcomes = await MboxExporter.ExportAsync([first, second], target, default);

        Assert.All(outcomes, o => Assert.Equal(RestoreOutcome.Restored, o.Result));
        var mbox = Path.Combine(target, "alice", "Archive", "2026.mbox");
        Assert.Equal(mbox, outcomes[0].Target);
        var text = await File.ReadAllTextAsync(mbox);
        Assert.StartsWith("From bounce@lists.example Tue Oct 20 09:15:00 2026\n", text, StringComparison.Ordinal);
        Assert.Contains("\n>From the start of a line\n>>From already quoted\nplain\n\nFrom bob@example.com ", text, StringComparison.Ordinal);
        Assert.EndsWith("no final line end\n\n", text, StringComparison.Ordinal);

        // Unquoting (mboxrd) gives back each message as stored.
        var parts = Split(text);
        Assert.Equal([await File.ReadAllTextAsync(first.Path), await File.ReadAllTextAsync(second.Path) + "\n"], parts);
    }

    [Fact]
    public async Task Mbox_SecondRunWithOneNewMessage_AppendsOnlyThatOne()
    {
        var first = Message("a", "Message-ID: <a@x>\nSubject: a\n\none\n");
        var second = Message("b", "Message-ID: <b@x>\nSubject: b\n\ntwo\n");
        var target = Path.Combine(_directory.FullName, "out");
        await MboxExporter.ExportAsync([first], target, default);

        var again = await MboxExporter.ExportAsync([first, second], target, default);

        Assert.Equal([RestoreOutcome.Duplicate, RestoreOutcome.Restored], again.Select(o => o.Result));
        var mbox = again[0].Target;
        Assert.Equal(2, Split(await File.ReadAllTextAsync(mbox)).Count);
        Assert.Equal(2, File.ReadAllLines(mbox + MboxExporter.HashesSuffix).Length);
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(mbox)!, "*.tmp"));
    }

    [Fact]
    public async Task Smtp_EachMessageAttachedUnchanged_ToItsOwner()
    {
        using var server = await SmtpSink.StartAsync();
        var original = "From: Ann <ann@example.com>\r\nTo: alice@example.com\r\nMessage-ID: <q3@x>\r\nSubject: Quarterly figures\r\nDate: Tue, 20 Oct 2026 09:00:00 +0000\r\n\r\nThe figures.\r\n";
        var message = Message("q3", original);
        var sender = new SmtpSender("127.0.0.1", server.Port, SecureSocketOptions.None, "{user}@example.com", "recovery@example.com", null, TextWriter.Null);

        var outcome = Assert.Single(await sender.SendAsync([message], "mail@monday", default));

        Assert.Equal(RestoreOutcome.Restored, outcome.Result);
        Assert.Equal("alice@example.com", outcome.Target);
        var (envelopeTo, body) = Assert.Single(server.Received);
        Assert.Equal("alice@example.com", envelopeTo);
        using var cover = MimeMessage.Load(new MemoryStream(body));
        Assert.Equal("Recovered: Quarterly figures", cover.Subject);
        Assert.Contains("mail@monday", cover.TextBody, StringComparison.Ordinal);
        var attached = Assert.IsType<MessagePart>(Assert.Single(cover.Attachments)).Message;
        Assert.NotNull(attached);
        Assert.Equal("q3@x", attached.MessageId);
        Assert.Equal("The figures.", attached.TextBody?.TrimEnd());
        Assert.Equal("Quarterly figures", attached.Subject);
    }

    [Fact]
    public async Task Smtp_RecipientRefused_ThatMessageFailsAlone()
    {
        using var server = await SmtpSink.StartAsync(refuse: "bob@example.com");
        var forBob = Message("b", "Message-ID: <b@x>\nSubject: b\n\nb\n", user: "bob");
        var forAlice = Message("a", "Message-ID: <a@x>\nSubject: a\n\na\n");
        var sender = new SmtpSender("127.0.0.1", server.Port, SecureSocketOptions.None, "{user}@example.com", "recovery@example.com", null, TextWriter.Null);

        var outcomes = await sender.SendAsync([forBob, forAlice], "mail@monday", default);

        Assert.Equal([RestoreOutcome.Failed, RestoreOutcome.Restored], outcomes.Select(o => o.Result));
        Assert.Equal("alice@example.com", Assert.Single(server.Received).To);
    }

    [Fact]
    public async Task Smtp_NothingListening_UnreachableWithTheOptionToCheck()
    {
        var port = FreePort.Find();
        var sender = new SmtpSender("127.0.0.1", port, SecureSocketOptions.None, "admin@example.com", "recovery@example.com", null, TextWriter.Null);

        var error = await Assert.ThrowsAsync<RecoveryException>(() => sender.SendAsync([Message("a", "Subject: a\n\na\n")], "mail@monday", default));

        Assert.Equal(RecoveryFailure.Unreachable, error.Failure);
        Assert.Contains("--smtp", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("not an address", "recovery@example.com", "--send-to")]
    [InlineData("{user}", "recovery@example.com", "--send-to")]
    [InlineData("{user}@example.com", "nobody", "--send-from")]
    public void Smtp_BadAddresses_RefusedBeforeAnythingIsMounted(string to, string from, string named)
    {
        var error = Assert.Throws<RecoveryException>(() => SmtpSender.CheckAddresses(to, from));

        Assert.Equal(RecoveryFailure.BadInput, error.Failure);
        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void SmtpEndpoint_DefaultsToPort25_AndNamesItsOption()
    {
        Assert.Equal(("mx.example.com", 25), ImapEndpoint.Parse("mx.example.com", "--smtp", 25));
        Assert.Contains("--smtp", Assert.Throws<RecoveryException>(() => ImapEndpoint.Parse("mx:0", "--smtp", 25)).Message, StringComparison.Ordinal);
    }

    private FoundMessage Message(string name, string content, string user = "alice")
    {
        var path = Path.Combine(_directory.FullName, name);
        File.WriteAllText(path, content);
        var headers = HeaderList.Load(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(content)));
        return new FoundMessage(user, "Archive/2026", path, Received, null, headers[HeaderId.From] ?? "", "", headers[HeaderId.Subject] ?? "", headers[HeaderId.MessageId], content.Length, [@"\Seen"], [], null);
    }

    /// <summary>mboxrd read back: split at From_ lines, drop the separator line, take one '>' off quoted From lines.</summary>
    private static List<string> Split(string mbox)
    {
        var messages = new List<string>();
        System.Text.StringBuilder? current = null;
        foreach (var line in mbox.Split('\n'))
        {
            if (line.StartsWith("From ", StringComparison.Ordinal))
            {
                if (current is not null)
                {
                    messages.Add(current.ToString()[..^1]); // the blank separator line
                }

                current = new System.Text.StringBuilder();
                continue;
            }

            var unquoted = line.TrimStart('>').StartsWith("From ", StringComparison.Ordinal) ? line[1..] : line;
            current!.Append(unquoted).Append('\n');
        }

        messages.Add(current!.ToString()[..^2]); // the separator line and the split's last empty piece
        return messages;
    }

    /// <summary>An SMTP server (the SmtpServer package) on a loopback port that keeps what it receives.</summary>
    private sealed class SmtpSink : MessageStore, IDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private SmtpServer.SmtpServer? _server;
        private Task? _running;
        private int _disposed;

        public int Port { get; private set; }

        public ConcurrentQueue<(string To, byte[] Body)> Received { get; } = new();

        public static async Task<SmtpSink> StartAsync(string? refuse = null)
        {
            var sink = new SmtpSink { Port = FreePort.Find() };
            var options = new SmtpServerOptionsBuilder()
                .ServerName("sink.test")
                .Endpoint(b => b.Endpoint(new IPEndPoint(IPAddress.Loopback, sink.Port)))
                .Build();
            var services = new SmtpServer.ComponentModel.ServiceProvider();
            services.Add(sink);
            // SmtpServer passes the recipient first, then the sender.
            services.Add(new DelegatingMailboxFilter((IMailbox to, IMailbox _) => !string.Equals($"{to.User}@{to.Host}", refuse, StringComparison.Ordinal)));
            sink._server = new SmtpServer.SmtpServer(options, services);
            sink._running = sink._server.StartAsync(sink._stop.Token);
            for (var i = 0; i < 100; i++)
            {
                try
                {
                    using var probe = new TcpClient();
                    await probe.ConnectAsync(IPAddress.Loopback, sink.Port);
                    return sink;
                }
                catch (SocketException)
                {
                    await Task.Delay(50);
                }
            }

            throw new InvalidOperationException($"the SMTP sink did not listen on port {sink.Port}");
        }

        public override Task<SmtpResponse> SaveAsync(ISessionContext context, IMessageTransaction transaction, ReadOnlySequence<byte> buffer, CancellationToken cancellationToken)
        {
            foreach (var to in transaction.To)
            {
                Received.Enqueue(($"{to.User}@{to.Host}", buffer.ToArray()));
            }

            return Task.FromResult(SmtpResponse.Ok);
        }

        public void Dispose()
        {
            // The server disposes its services when it stops, this sink among them: once is enough.
            if (Interlocked.Exchange(ref _disposed, 1) != 0)
            {
                return;
            }

            _stop.Cancel();
            try
            {
                _running?.Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
                // Cancelled on purpose.
            }

            _stop.Dispose();
        }
    }
}
