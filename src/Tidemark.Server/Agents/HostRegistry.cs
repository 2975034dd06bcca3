using System.Text.RegularExpressions;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Server.Agents;

/// <summary>
/// The application hosts whose agents this server calls (`tidemark host add`), kept in the pool's
/// control store. Each is pinned by its certificate fingerprint: the server connects only to an
/// agent presenting exactly that certificate, and presents its own identity (the one partners pin).
/// </summary>
public sealed partial class HostRegistry(Pool pool, TimeProvider time)
{
    private readonly Lock _lock = new();

    public IReadOnlyList<HostDto> List() => [.. pool.Control.List(HostRecord.Kind).Select(h => ToDto(h.Value))];

    public HostRecord Get(string name) =>
        pool.Control.Get(HostRecord.Kind, name)
            ?? throw new StorageException(StorageError.NotFound, $"no host {name}; 'tidemark host list' shows them, 'tidemark host add' adds one");

    public HostDto Add(AddHostRequest request, string ownFingerprint)
    {
        if (!NamePattern().IsMatch(request.Name ?? ""))
        {
            throw new StorageException(StorageError.InvalidName, $"host name '{request.Name}' must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit");
        }

        try
        {
            ServerSettings.ParseEndpoint(request.Address, "agent address");
        }
        catch (ArgumentException ex)
        {
            throw new StorageException(StorageError.InvalidArgument, $"{ex.Message} (the agent's listen address, printed by 'tidemark agent pair' on the host)", ex);
        }

        var fingerprint = (request.Fingerprint ?? "").Replace(":", "", StringComparison.Ordinal).ToLowerInvariant();
        if (!FingerprintPattern().IsMatch(fingerprint))
        {
            throw new StorageException(StorageError.InvalidArgument, $"'{request.Fingerprint}' is not a certificate fingerprint; copy the 64 hex digits 'tidemark agent pair' prints on the host");
        }

        if (fingerprint == ownFingerprint)
        {
            throw new StorageException(StorageError.InvalidArgument, "that fingerprint is this server's own; give the agent's ('tidemark agent identity' on the host)");
        }

        lock (_lock)
        {
            if (pool.Control.Get(HostRecord.Kind, request.Name!) is not null)
            {
                throw new StorageException(StorageError.AlreadyExists, $"host {request.Name} exists; remove it first to change it");
            }

            if (pool.Control.List(HostRecord.Kind).FirstOrDefault(h => h.Value.Fingerprint == fingerprint).Value is { } same)
            {
                throw new StorageException(StorageError.AlreadyExists, $"that agent is already added as host {same.Name}");
            }

            var record = new HostRecord(request.Name!, request.Address, fingerprint, time.GetUtcNow());
            pool.Control.Put(HostRecord.Kind, record.Name, record);
            return ToDto(record);
        }
    }

    public void Remove(string name)
    {
        lock (_lock)
        {
            Get(name);
            pool.Control.Delete(HostRecord.Kind, name);
        }
    }

    /// <summary>Checks a list of host names (a snapshot request's or a policy's); throws naming the unknown ones.</summary>
    public IReadOnlyList<HostRecord> Resolve(IReadOnlyList<string> names)
    {
        if (names.Count > 64)
        {
            throw new StorageException(StorageError.InvalidArgument, $"at most 64 hosts per snapshot, not {names.Count}");
        }

        var distinct = names.Distinct(StringComparer.Ordinal).ToList();
        var found = distinct.Select(n => (Name: n, Record: pool.Control.Get(HostRecord.Kind, n))).ToList();
        var missing = found.Where(f => f.Record is null).Select(f => f.Name).ToList();
        return missing.Count > 0
            ? throw new StorageException(StorageError.NotFound, $"no host {string.Join(", ", missing)}; 'tidemark host list' shows them")
            : [.. found.Select(f => f.Record!)];
    }

    private static HostDto ToDto(HostRecord h) => new(h.Name, h.Address, h.Fingerprint, h.AddedAt);

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex FingerprintPattern();
}
