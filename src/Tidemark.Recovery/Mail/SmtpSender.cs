using System.Globalization;
using System.Net;
using System.Net.Sockets;
using MailKit;
using MailKit.Net.Smtp;
using MailKit.Security;
using MimeKit;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Sends found messages by SMTP to their owner or to an administrator: each message travels
/// unchanged as a message/rfc822 attachment of a short cover message that says where it came from
/// (snapshot, folder, received date, flags), so the original's headers, signatures and date stay
/// intact and a mail client opens it as the original mail.
/// </summary>
/// <remarks>
/// Unlike an IMAP restore nothing can be checked for duplicates at the other end: sending twice
/// delivers twice, and the CLI says so. One SMTP session carries every message; a message the server
/// refuses (size, recipient) fails alone.
/// </remarks>
/// <param name="recipient">an address; "{user}" in it is replaced by the mailbox owner ("{user}@example.com")</param>
/// <param name="sender">the cover message's From and the envelope sender</param>
/// <param name="login">a submission login, or null for a relay that accepts the host (port 25 on the mail server)</param>
public sealed class SmtpSender(string host, int port, SecureSocketOptions tls, string recipient, string sender, MasterCredentials? login, TextWriter log)
{
    public const string UserPlaceholder = "{user}";

    /// <summary>The server and recipient, for logs and the recovery's event.</summary>
    public override string ToString() => $"{host}:{port} to {recipient}";

    /// <summary>Checks the addresses before anything is mounted: a typo must not cost a recovery run.</summary>
    public static void CheckAddresses(string recipient, string sender)
    {
        var probe = recipient.Replace(UserPlaceholder, "user", StringComparison.Ordinal);
        if (!MailboxAddress.TryParse(probe, out var to) || !to.Address.Contains('@', StringComparison.Ordinal))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"--send-to '{recipient}' is not a mail address (name@domain, or {UserPlaceholder}@domain for each mailbox owner)");
        }

        if (!MailboxAddress.TryParse(sender, out var from) || !from.Address.Contains('@', StringComparison.Ordinal))
        {
            throw new RecoveryException(RecoveryFailure.BadInput, $"--send-from '{sender}' is not a mail address (name@domain)");
        }
    }

    public async Task<IReadOnlyList<RestoreOutcome>> SendAsync(IReadOnlyList<FoundMessage> messages, string snapshot, CancellationToken ct)
    {
        using var client = new SmtpClient();
        await ConnectAsync(client, ct);
        var outcomes = new List<RestoreOutcome>();
        foreach (var message in messages)
        {
            var to = recipient.Replace(UserPlaceholder, message.User, StringComparison.Ordinal);
            try
            {
                if (!client.IsConnected)
                {
                    // Some servers end the session after refusing a message; the next one gets a new one.
                    await ConnectAsync(client, ct);
                }

                using var cover = await CoverAsync(message, to, snapshot, ct);
                var reply = await client.SendAsync(cover, ct);
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Restored, to, Short(reply)));
            }
            catch (SmtpCommandException e)
            {
                // A refused recipient or a message over the server's size limit: this one only.
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Failed, to, $"{(int)e.StatusCode} {e.Message}"));
            }
            catch (SmtpProtocolException e)
            {
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Failed, to, $"the SMTP server ended the session: {e.Message}"));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or ParseException)
            {
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Failed, to, e.Message));
            }
        }

        if (client.IsConnected)
        {
            await client.DisconnectAsync(quit: true, ct);
        }

        return outcomes;
    }

    private async Task ConnectAsync(SmtpClient client, CancellationToken ct)
    {
        try
        {
            await client.ConnectAsync(host, port, tls, ct);
        }
        catch (Exception e) when (e is SocketException or IOException or SmtpProtocolException or TimeoutException)
        {
            throw new RecoveryException(RecoveryFailure.Unreachable, $"cannot reach the SMTP server at {host}:{port} ({e.Message}); check --smtp HOST:PORT", e);
        }
        catch (SslHandshakeException e)
        {
            throw new RecoveryException(RecoveryFailure.Unreachable, $"TLS with the SMTP server at {host}:{port} failed ({e.Message}); check --smtp-tls and the server's certificate", e);
        }

        if (login is null)
        {
            return;
        }

        try
        {
            await client.AuthenticateAsync(new NetworkCredential(login.User, login.Password), ct);
        }
        catch (AuthenticationException e)
        {
            throw new RecoveryException(RecoveryFailure.Refused, $"the SMTP server at {host}:{port} refused login {login.User} ({e.Message}); check --smtp-login-file", e);
        }
        catch (NotSupportedException e)
        {
            throw new RecoveryException(RecoveryFailure.Refused, $"the SMTP server at {host}:{port} does not offer authentication ({e.Message}); it may require TLS first (--smtp-tls starttls)", e);
        }

        await log.WriteLineAsync($"SMTP {host}:{port}: logged in as {login.User}");
    }

    /// <summary>The cover message: who, where from, and the original attached unchanged.</summary>
    internal async Task<MimeMessage> CoverAsync(FoundMessage message, string to, string snapshot, CancellationToken ct)
    {
        var original = await MimeMessage.LoadAsync(message.Path, ct);
        var cover = new MimeMessage();
        cover.From.Add(MailboxAddress.Parse(sender));
        cover.To.Add(MailboxAddress.Parse(to));
        cover.Subject = $"Recovered: {message.Subject}".ReplaceLineEndings(" ");
        cover.Date = DateTimeOffset.Now;
        cover.Headers.Add("Auto-Submitted", "auto-generated");
        var flags = string.Join(' ', message.Flags.Concat(message.Keywords));
        var text = new TextPart("plain")
        {
            Text = string.Create(
                CultureInfo.InvariantCulture,
                $"""
                Tidemark recovered this message from snapshot {snapshot}.

                Mailbox:  {message.User}
                Folder:   {message.Folder}
                Received: {message.InternalDate:yyyy-MM-dd HH:mm:ss zzz}
                From:     {message.From.ReplaceLineEndings(" ")}
                Subject:  {message.Subject.ReplaceLineEndings(" ")}
                Flags:    {(flags.Length == 0 ? "(none)" : flags)}

                The original message is attached unchanged.
                """),
        };
        var attached = new MessagePart { Message = original, ContentDisposition = new ContentDisposition(ContentDisposition.Attachment) { FileName = "recovered.eml" } };
        cover.Body = new Multipart("mixed") { text, attached };
        return cover;
    }

    private static string? Short(string reply)
    {
        var line = reply.ReplaceLineEndings(" ").Trim();
        return line.Length == 0 ? null : line.Length <= 60 ? line : line[..59] + "…";
    }
}
