using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Protocols.Iscsi;

namespace Tidemark.Server;

/// <summary>iSCSI exports: one target (IQN) per export, its LUNs, its allow-list and its CHAP secrets.</summary>
public sealed partial class ExportRegistry
{
    /// <summary>Prefix of the IQN an export gets when none is given: iqn.2026-11.dev.tidemark:NAME.</summary>
    public const string DefaultIqnPrefix = "iqn.2026-11.dev.tidemark:";

    /// <summary>RFC 7143 9.2.1: CHAP secrets should be at least 12 bytes long.</summary>
    public const int MinChapSecretLength = 12;

    /// <summary>RFC 1994 puts no limit on the secret; 255 keeps exports.json and CHAP_N/CHAP_R small.</summary>
    public const int MaxChapFieldLength = 255;

    /// <summary>Enough for any real host; SAM's flat addressing allows more, the list must stay readable.</summary>
    public const int MaxLuns = 256;

    /// <summary>Export names may hold '@' (from vol@snap), which iSCSI names may not: it becomes '-'; letters are lower-cased (RFC 3722).</summary>
    public static string DefaultIqn(string exportName) =>
        DefaultIqnPrefix + new string([.. exportName.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or ':' ? c : '-')]);

    private static ExportRecord IscsiRecord(string name, CreateExportRequest request)
    {
        List<string> luns = [request.Target, .. request.AdditionalTargets ?? []];
        if (luns.Count > MaxLuns)
        {
            throw new StorageException(StorageError.InvalidArgument, $"an iSCSI export has at most {MaxLuns} LUNs, not {luns.Count}; split it into several exports");
        }

        if (luns.FirstOrDefault(string.IsNullOrWhiteSpace) is not null)
        {
            throw new StorageException(StorageError.InvalidArgument, "every LUN needs a target: a volume, a view or VOLUME@SNAPSHOT");
        }

        if (luns.GroupBy(t => t, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1) is { } twice)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{twice.Key} is listed twice; each volume, view or snapshot can be one LUN of an export");
        }

        var iqn = string.IsNullOrEmpty(request.Iqn) ? DefaultIqn(name) : request.Iqn;
        if (!IscsiName.IsValid(iqn))
        {
            throw new StorageException(
                StorageError.InvalidName,
                $"'{iqn}' is not a valid iSCSI target name; write it as iqn.YYYY-MM.reversed.domain:name (for example {DefaultIqnPrefix}db), at most {IscsiName.MaxLengthBytes} characters");
        }

        var allowed = (request.AllowedInitiators ?? []).Distinct(StringComparer.OrdinalIgnoreCase).ToList();
        if (allowed.FirstOrDefault(i => !IscsiName.IsValid(i)) is { } badInitiator)
        {
            throw new StorageException(StorageError.InvalidArgument, $"'{badInitiator}' is not a valid initiator name; write it as iqn.YYYY-MM.reversed.domain:host, eui.HEX16 or naa.HEX");
        }

        var chap = Chap(request.ChapUser, request.ChapSecret, "CHAP", "--chap-user", "--chap-secret");
        var mutual = Chap(request.MutualChapUser, request.MutualChapSecret, "mutual CHAP", "--mutual-user", "--mutual-secret");
        if (mutual is not null && chap is null)
        {
            throw new StorageException(StorageError.InvalidArgument, "mutual CHAP needs CHAP too: give --chap-user and --chap-secret as well");
        }

        if (mutual is not null && mutual.Secret == chap!.Secret)
        {
            // RFC 7143 9.2.1: the initiator's and the target's secrets must differ, or a reflected challenge authenticates.
            throw new StorageException(StorageError.InvalidArgument, "the mutual CHAP secret must differ from the CHAP secret");
        }

        return new ExportRecord(name, Iscsi, request.Target, request.ReadOnly)
        {
            Luns = luns,
            Iqn = iqn,
            AllowedInitiators = allowed,
            Chap = chap,
            MutualChap = mutual,
        };
    }

    private static ChapRecord? Chap(string? user, string? secret, string what, string userFlag, string secretFlag)
    {
        if (string.IsNullOrEmpty(user) && string.IsNullOrEmpty(secret))
        {
            return null;
        }

        if (string.IsNullOrEmpty(user) || string.IsNullOrEmpty(secret))
        {
            throw new StorageException(StorageError.InvalidArgument, $"{what} needs both a user name ({userFlag}) and a secret ({secretFlag})");
        }

        if (user.Length > MaxChapFieldLength || user.Any(char.IsControl))
        {
            throw new StorageException(StorageError.InvalidArgument, $"the {what} user name must be 1-{MaxChapFieldLength} printable characters");
        }

        if (secret.Length is < MinChapSecretLength or > MaxChapFieldLength)
        {
            throw new StorageException(
                StorageError.InvalidArgument,
                $"the {what} secret must be {MinChapSecretLength}-{MaxChapFieldLength} characters long (RFC 7143 9.2.1 asks for at least 12), not {secret.Length}");
        }

        return new ChapRecord(user, secret);
    }

    /// <summary>Publishes the export's target; returns what each LUN serves (see <see cref="ServedImage"/>).</summary>
    private List<string> PublishIscsi(ExportRecord record)
    {
        var iqn = record.Iqn ?? throw new StorageException(StorageError.InvalidArgument, $"export '{record.Name}' in exports.json has no iqn");
        if (IscsiCatalog.TryGetTarget(iqn, out var existing) && existing.Definition.Alias != record.Name)
        {
            throw new StorageException(StorageError.AlreadyExists, $"the iSCSI target {iqn} is served by export '{existing.Definition.Alias}'");
        }

        var served = record.AllTargets.Select(target => ServedImage(record, target)).ToList();
        var luns = record.AllTargets
            .Select((target, lun) => new IscsiLunDefinition(lun, Metered(target, Open(served[lun]), served[lun]), record.ReadOnly || IsSnapshot(target)))
            .ToList();
        var definition = new IscsiTargetDefinition(iqn, luns)
        {
            Alias = record.Name,
            AllowedInitiators = record.AllowedInitiators is { Count: > 0 } allowed ? allowed : null,
            Chap = record.Chap is { } c ? new IscsiChapCredentials(c.User, c.Secret) : null,
            MutualChap = record.MutualChap is { } m ? new IscsiChapCredentials(m.User, m.Secret) : null,
        };
        try
        {
            IscsiCatalog.AddOrUpdate(definition);
        }
        catch (ArgumentException ex)
        {
            // Only a hand-edited exports.json gets here: requests are checked before.
            throw new StorageException(StorageError.InvalidArgument, ex.Message);
        }

        return served;
    }

    private ExportDto IscsiDto(ExportRecord r, string state, string? problem)
    {
        var iqn = r.Iqn ?? string.Empty;
        var luns = r.AllTargets
            .Select((target, lun) => new ExportLunDto(lun, target, r.ReadOnly || IsSnapshot(target), IscsiAddress is null ? null : $"iscsi://{IscsiAddress}/{iqn}/{lun}"))
            .ToList();
        return new ExportDto(
            r.Name,
            r.Protocol,
            r.Target,
            luns.All(l => l.ReadOnly),
            state,
            problem,
            luns[0].Url,
            iqn,
            luns,
            r.AllowedInitiators ?? [],
            r.Chap?.User,
            r.MutualChap?.User);
    }
}
