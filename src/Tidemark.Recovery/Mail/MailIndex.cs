using System.Security.Cryptography;
using System.Text;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Which store an index describes (docs/adr/0012, "Header index"): a snapshot by its identity (the
/// server's snapshot id, which a snapshot made again under a reused name does not share, plus its
/// address and time), and where the store is inside it. Two recoveries with equal keys read the
/// same bytes, since a snapshot never changes.
/// </summary>
public sealed record MailIndexKey(Guid SnapshotId, string Address, DateTimeOffset CreatedAt, string MailRoot, string MaildirName)
{
    public string Identity => $"snapshot {SnapshotId:D} {Address} {CreatedAt.UtcTicks} root {MailRoot} maildir {MaildirName}";

    /// <summary>The cache subdirectory for this key: a hash, so no text from anywhere becomes a path.</summary>
    public string DirectoryName => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Identity)))[..32];
}

/// <summary>
/// One message of a user's Maildir as the index keeps it: enough to decide whether it can match a
/// filter without opening it. <see cref="MaybeAttachment"/> is true when the top-level headers allow
/// an attachment (multipart, or a Content-Disposition); only those are read whole for --has-attachment.
/// </summary>
/// <param name="RelativePath">under the user's Maildir directory, '/'-separated ("cur/1.M1.host:2,S", ".Archive/new/2.M2.host")</param>
public sealed record MailIndexEntry(
    string Folder,
    string RelativePath,
    long InternalDateTicks,
    string? MessageId,
    string Subject,
    string From,
    string Recipients,
    bool MaybeAttachment)
{
    public DateTimeOffset InternalDate => new(InternalDateTicks, TimeSpan.Zero);

    public bool MayMatch(MailSearchFilter filter) =>
        filter.MatchesFolder(Folder)
        && filter.MatchesInternalDate(InternalDate)
        && filter.MatchesHeaders(MessageId, Subject, From, Recipients)
        && (!filter.HasAttachment || MaybeAttachment);
}

/// <summary>
/// The on-disk form of one user's index: "TMMI", a format version, the store's identity, the user,
/// the entries, then a SHA-256 of everything before it. A file that is torn, edited, of another
/// version or of another snapshot or user is reported as unusable and rebuilt, never trusted.
/// </summary>
internal static class MailIndexFile
{
    /// <summary>Bumped whenever the layout or the meaning of a field changes; older files are rebuilt.</summary>
    public const ushort FormatVersion = 1;

    private static ReadOnlySpan<byte> Magic => "TMMI"u8;

    /// <summary>An index larger than this is not ours (a 2,000-message user takes about 0.5 MiB).</summary>
    private const long MaxFileBytes = 1L << 30;

    private const int MaxEntries = 10_000_000;

    public static byte[] Write(string identity, string user, IReadOnlyCollection<MailIndexEntry> entries)
    {
        using var buffer = new MemoryStream();
        using (var writer = new BinaryWriter(buffer, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(Magic);
            writer.Write(FormatVersion);
            writer.Write(identity);
            writer.Write(user);
            writer.Write(entries.Count);
            foreach (var e in entries)
            {
                writer.Write(e.Folder);
                writer.Write(e.RelativePath);
                writer.Write(e.InternalDateTicks);
                writer.Write(e.MessageId is not null);
                writer.Write(e.MessageId ?? string.Empty);
                writer.Write(e.Subject);
                writer.Write(e.From);
                writer.Write(e.Recipients);
                writer.Write(e.MaybeAttachment);
            }
        }

        buffer.Write(SHA256.HashData(buffer.GetBuffer().AsSpan(0, (int)buffer.Length)));
        return buffer.ToArray();
    }

    /// <summary>The entries, or null with the reason the file cannot be used.</summary>
    public static IReadOnlyList<MailIndexEntry>? Read(ReadOnlySpan<byte> file, string identity, string user, out string? problem)
    {
        if (file.Length < Magic.Length + sizeof(ushort) + SHA256.HashSizeInBytes || file.Length > MaxFileBytes || !file.StartsWith(Magic))
        {
            problem = "not an index file";
            return null;
        }

        var body = file[..^SHA256.HashSizeInBytes];
        if (!SHA256.HashData(body).AsSpan().SequenceEqual(file[^SHA256.HashSizeInBytes..]))
        {
            problem = "its checksum does not match (torn or edited)";
            return null;
        }

        using var reader = new BinaryReader(new MemoryStream(body.ToArray(), writable: false), Encoding.UTF8);
        reader.ReadBytes(Magic.Length);
        var version = reader.ReadUInt16();
        if (version != FormatVersion)
        {
            problem = $"format version {version}, this tool writes {FormatVersion}";
            return null;
        }

        try
        {
            if (reader.ReadString() != identity || reader.ReadString() != user)
            {
                problem = "it describes another snapshot or user";
                return null;
            }

            var count = reader.ReadInt32();
            if (count is < 0 or > MaxEntries)
            {
                problem = $"it claims {count} entries";
                return null;
            }

            var entries = new List<MailIndexEntry>(Math.Min(count, 100_000));
            for (var i = 0; i < count; i++)
            {
                var folder = reader.ReadString();
                var relative = reader.ReadString();
                var ticks = reader.ReadInt64();
                var hasId = reader.ReadBoolean();
                var id = reader.ReadString();
                var entry = new MailIndexEntry(folder, relative, ticks, hasId ? id : null, reader.ReadString(), reader.ReadString(), reader.ReadString(), reader.ReadBoolean());
                if (!IsSafeRelativePath(relative) || ticks < DateTimeOffset.MinValue.UtcTicks || ticks > DateTimeOffset.MaxValue.UtcTicks)
                {
                    problem = $"entry {i} is malformed";
                    return null;
                }

                entries.Add(entry);
            }

            if (reader.BaseStream.Position != reader.BaseStream.Length)
            {
                problem = "bytes follow its last entry";
                return null;
            }

            problem = null;
            return entries;
        }
        catch (Exception e) when (e is EndOfStreamException or FormatException or IOException or DecoderFallbackException)
        {
            problem = $"it cannot be parsed ({e.GetType().Name})";
            return null;
        }
    }

    /// <summary>A path the index may name: inside the user's Maildir, never up or out of it.</summary>
    internal static bool IsSafeRelativePath(string path) =>
        path.Length > 0 && !path.StartsWith('/') && !path.Contains('\0', StringComparison.Ordinal)
        && path.Split('/').All(p => p.Length > 0 && p != "." && p != "..");
}
