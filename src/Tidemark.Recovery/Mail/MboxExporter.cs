using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using MimeKit;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Writes found messages into mbox files, one per user and folder (DIR/USER/FOLDER.mbox, '/' levels
/// as directories), in the mboxrd variant (RFC 4155 and the "mboxrd" convention): each message starts
/// with a "From SENDER DATE" line carrying its received date, every body or header line that starts
/// with any number of '>' and then "From " gets one more '>', and a blank line ends it, so any mbox
/// reader (mutt, Thunderbird, Dovecot, mb2md) splits the file back into the exact messages.
/// </summary>
/// <remarks>
/// The message bytes are kept as stored (no Status/X-Status headers added): this is the legal-hold
/// format, and IMAP flags are not part of it (restore over IMAP keeps them). A file is replaced whole
/// (written beside it, flushed, renamed), so an interrupted export never leaves half a message at
/// the end of an mbox that a later run would append to. The content hashes of what a file holds are
/// kept beside it (FOLDER.mbox.sha256), so running the same export twice adds nothing twice.
/// </remarks>
public static class MboxExporter
{
    public const string HashesSuffix = ".sha256";

    public static async Task<IReadOnlyList<RestoreOutcome>> ExportAsync(IReadOnlyList<FoundMessage> messages, string directory, CancellationToken ct)
    {
        Directory.CreateDirectory(directory);
        var outcomes = new List<RestoreOutcome>();
        foreach (var folder in messages.GroupBy(m => (m.User, m.Folder)))
        {
            var levels = folder.Key.Folder.Split('/').Select(EmlExporter.Safe).ToArray();
            levels[^1] += ".mbox";
            var target = Path.Combine([directory, EmlExporter.Safe(folder.Key.User), .. levels]);
            try
            {
                outcomes.AddRange(await ExportFolderAsync([.. folder], target, ct));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                outcomes.AddRange(folder.Select(m => new RestoreOutcome(m, RestoreOutcome.Failed, target, e.Message)));
            }
        }

        return outcomes;
    }

    private static async Task<IReadOnlyList<RestoreOutcome>> ExportFolderAsync(IReadOnlyList<FoundMessage> messages, string target, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        var hashesFile = target + HashesSuffix;
        var held = File.Exists(hashesFile) && File.Exists(target)
            ? new HashSet<string>(File.ReadLines(hashesFile).Where(l => l.Length > 0), StringComparer.Ordinal)
            : new HashSet<string>(StringComparer.Ordinal);
        var outcomes = new List<RestoreOutcome>();
        var added = new List<(FoundMessage Message, string Hash)>();
        foreach (var message in messages.OrderBy(m => m.InternalDate))
        {
            string hash;
            await using (var file = File.OpenRead(message.Path))
            {
                hash = await ContentHash.ComputeAsync(file, ct);
            }

            if (!held.Add(hash))
            {
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Duplicate, target, "already in the mbox"));
                continue;
            }

            added.Add((message, hash));
        }

        if (added.Count == 0)
        {
            return outcomes;
        }

        var folder = Path.GetDirectoryName(target)!;
        var temporary = Path.Combine(folder, $".{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp");
        try
        {
            await using (var output = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 64 * 1024, useAsync: true))
            {
                if (File.Exists(target))
                {
                    await using var existing = File.OpenRead(target);
                    await existing.CopyToAsync(output, ct);
                }

                foreach (var (message, _) in added)
                {
                    await using var source = File.OpenRead(message.Path);
                    await WriteMessageAsync(source, EnvelopeSender(message.Path), message.InternalDate, output, ct);
                }

                await output.FlushAsync(ct);
                output.Flush(flushToDisk: true);
            }

            File.Move(temporary, target, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }

        // After the mbox: a crash between the two leaves hashes missing, so a rerun adds a message
        // twice at worst; never the other way round (a hash listed whose message is not there).
        var hashes = Path.Combine(folder, $".{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp");
        await File.WriteAllLinesAsync(hashes, held.Order(StringComparer.Ordinal), ct);
        File.Move(hashes, hashesFile, overwrite: true);
        outcomes.AddRange(added.Select(a => new RestoreOutcome(a.Message, RestoreOutcome.Restored, target)));
        return outcomes;
    }

    /// <summary>
    /// One mboxrd entry: the From_ line, the message with ">From " quoting (lines as stored, LF or
    /// CRLF kept), a line end if the message lacks a final one, then the blank separator line.
    /// </summary>
    internal static async Task WriteMessageAsync(Stream message, string envelopeSender, DateTimeOffset received, Stream output, CancellationToken ct)
    {
        // asctime(3), as mbox writers since 4.4BSD put it: the day padded with a space to two places.
        var utc = received.UtcDateTime;
        var fromLine = string.Create(CultureInfo.InvariantCulture, $"From {envelopeSender} {utc:ddd MMM} {utc.Day,2} {utc:HH:mm:ss yyyy}\n");
        await output.WriteAsync(Encoding.ASCII.GetBytes(fromLine), ct);

        // One message in memory at a time: bounded by the mail server's own size limit (Postfix's
        // message_size_limit is 10 MB by default), and the quoting needs whole lines.
        using var buffered = new MemoryStream();
        await message.CopyToAsync(buffered, ct);
        var bytes = buffered.GetBuffer().AsMemory(0, (int)buffered.Length);
        var start = 0;
        while (start < bytes.Length)
        {
            var end = bytes.Span[start..].IndexOf((byte)'\n');
            var line = end < 0 ? bytes[start..] : bytes.Slice(start, end + 1);
            if (NeedsQuote(line.Span))
            {
                output.WriteByte((byte)'>');
            }

            await output.WriteAsync(line, ct);
            start += line.Length;
        }

        if (bytes.Length > 0 && bytes.Span[^1] != (byte)'\n')
        {
            output.WriteByte((byte)'\n');
        }

        output.WriteByte((byte)'\n');
    }

    /// <summary>mboxrd: a line of zero or more '>' followed by "From " is quoted with one more '>'.</summary>
    internal static bool NeedsQuote(ReadOnlySpan<byte> line)
    {
        var rest = line.TrimStart((byte)'>');
        return rest.StartsWith("From "u8);
    }

    /// <summary>
    /// The envelope sender for the From_ line: Return-Path as delivered, else the From address, else
    /// MAILER-DAEMON (what mbox writers use for a bounce); never with spaces, which would break the line.
    /// </summary>
    internal static string EnvelopeSender(string path)
    {
        try
        {
            using var stream = File.OpenRead(path);
            var headers = HeaderList.Load(stream);
            var candidate = headers[HeaderId.ReturnPath] is { } returnPath && InternetAddressList.TryParse(returnPath, out var returned) && returned.Mailboxes.FirstOrDefault() is { } r
                ? r.Address
                : headers[HeaderId.From] is { } from && InternetAddressList.TryParse(from, out var senders) && senders.Mailboxes.FirstOrDefault() is { } s
                    ? s.Address
                    : null;
            return string.IsNullOrWhiteSpace(candidate) || candidate.Any(c => char.IsWhiteSpace(c) || char.IsControl(c)) ? "MAILER-DAEMON" : candidate;
        }
        catch (FormatException)
        {
            return "MAILER-DAEMON";
        }
    }
}
