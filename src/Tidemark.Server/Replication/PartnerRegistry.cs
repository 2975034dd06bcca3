using System.Text.Json;
using System.Text.RegularExpressions;
using Tidemark.Api;

namespace Tidemark.Server.Replication;

/// <summary>
/// The servers this one replicates with, in DATA/partners.json (atomic rewrite, mode 0600): name,
/// replication address and certificate fingerprint. The replication listener admits exactly these
/// fingerprints; outgoing connections accept exactly the named partner's.
/// </summary>
public sealed partial class PartnerRegistry
{
    private readonly string _path;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, PartnerDto> _partners = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    public PartnerRegistry(string path, TimeProvider time)
    {
        _path = path;
        _time = time;
        if (File.Exists(path))
        {
            try
            {
                foreach (var partner in JsonSerializer.Deserialize<List<PartnerDto>>(File.ReadAllText(path), ServerSettings.FileJson) ?? [])
                {
                    _partners[partner.Name] = partner;
                }
            }
            catch (JsonException ex)
            {
                throw new InvalidDataException($"{path} is not a valid partner list ({ex.Message}); fix it or restore it from a backup", ex);
            }
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
            ServerSettings.ParseEndpoint(request.Address, "partner address");
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
            _partners[partner.Name] = partner;
            Save();
            return partner;
        }
    }

    public void Remove(string name)
    {
        lock (_lock)
        {
            if (!_partners.Remove(name))
            {
                throw new StorageException(StorageError.NotFound, $"no partner {name}");
            }

            Save();
        }
    }

    private void Save() =>
        AtomicFile.WriteAllText(_path, JsonSerializer.Serialize(_partners.Values.ToList(), ServerSettings.FileJson) + "\n", UnixFileMode.UserRead | UnixFileMode.UserWrite);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex FingerprintPattern();
}
