using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine.Control;

namespace Tidemark.Replication;

/// <summary>
/// The servers this one replicates with, kept as control records in the pool (<see cref="Kind"/>,
/// ADR 0011): name, replication address and certificate fingerprint. The replication listener admits
/// exactly these fingerprints; outgoing connections accept exactly the named partner's.
/// </summary>
public sealed partial class PartnerRegistry
{
    /// <summary>Partners as control records, named by partner name. Version 1: <see cref="PartnerRecord"/>.</summary>
    public static readonly ControlKind<PartnerRecord> Kind = new("partner", 1, json: ReplicationJson.Records);

    private readonly ControlStore _control;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, PartnerDto> _partners = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    /// <param name="legacyPath">DATA/partners.json of an older version: imported into the pool, then renamed NAME.migrated.</param>
    public PartnerRegistry(ControlStore control, string legacyPath, TimeProvider time, ILogger logger)
    {
        _control = control;
        _time = time;
        LegacyStateFile.Migrate(
            control,
            Kind,
            legacyPath,
            text => (JsonSerializer.Deserialize<List<PartnerRecord>>(text, ReplicationJson.Records) ?? []).Select(p => new KeyValuePair<string, PartnerRecord>(p.Name, p)),
            logger);
        foreach (var (name, record) in control.List(Kind))
        {
            _partners[name] = record.ToDto();
        }
    }

    public IReadOnlyList<PartnerDto> List()
    {
        lock (_lock)
        {
            return [.. _partners.Values];
        }
    }

    public PartnerDto Get(string name)
    {
        lock (_lock)
        {
            return _partners.TryGetValue(name, out var partner)
                ? partner
                : throw new StorageException(StorageError.NotFound, $"no partner {name}; 'tidemark partner list' shows them, 'tidemark partner add' pairs one");
        }
    }

    public bool IsKnown(string fingerprint)
    {
        lock (_lock)
        {
            return _partners.Values.Any(p => p.Fingerprint == fingerprint);
        }
    }

    public PartnerDto? FindByFingerprint(string fingerprint)
    {
        lock (_lock)
        {
            return _partners.Values.FirstOrDefault(p => p.Fingerprint == fingerprint);
        }
    }

    public PartnerDto Add(AddPartnerRequest request, string ownFingerprint)
    {
        if (!NamePattern().IsMatch(request.Name))
        {
            throw new StorageException(StorageError.InvalidName, $"partner name '{request.Name}' must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit");
        }

        try
        {
            SettingText.ParseEndpoint(request.Address, "partner address");
        }
        catch (ArgumentException ex)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{ex.Message} (the partner's replication address, from 'tidemark partner identity' there)", ex);
        }
        var fingerprint = request.Fingerprint.Replace(":", "", StringComparison.Ordinal).ToLowerInvariant();
        if (!FingerprintPattern().IsMatch(fingerprint))
        {
            throw new StorageException(StorageError.InvalidArgument, $"'{request.Fingerprint}' is not a certificate fingerprint; copy the 64 hex digits 'tidemark partner identity' prints on the partner");
        }

        if (fingerprint == ownFingerprint)
        {
            throw new StorageException(StorageError.InvalidArgument, "that fingerprint is this server's own; pair with the other server's ('tidemark partner identity' there)");
        }

        lock (_lock)
        {
            if (_partners.ContainsKey(request.Name))
            {
                throw new StorageException(StorageError.AlreadyExists, $"partner {request.Name} exists; remove it first to change it");
            }

            if (_partners.Values.FirstOrDefault(p => p.Fingerprint == fingerprint) is { } same)
            {
                throw new StorageException(StorageError.AlreadyExists, $"that server is already paired as {same.Name}");
            }

            var partner = new PartnerDto(request.Name, request.Address, fingerprint, _time.GetUtcNow());
            _control.Put(Kind, partner.Name, PartnerRecord.From(partner));
            _partners[partner.Name] = partner;
            return partner;
        }
    }

    public void Remove(string name)
    {
        lock (_lock)
        {
            if (!_partners.ContainsKey(name))
            {
                throw new StorageException(StorageError.NotFound, $"no partner {name}");
            }

            _control.Delete(Kind, name);
            _partners.Remove(name);
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex FingerprintPattern();
}
