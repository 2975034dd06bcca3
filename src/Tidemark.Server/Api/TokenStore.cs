using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine.Control;

namespace Tidemark.Server.Api;

/// <summary>
/// Named API tokens with roles, as control records in the pool (kind "token", ADR 0011; DATA/tokens.json
/// of older versions is imported once, then renamed). Only a SHA-256 of each secret is
/// kept: the secrets are 32 random bytes, so a fast hash is enough (nothing to brute-force), and a
/// copy of the pool's metadata does not let anyone in. The first start turns DATA/token (which the CLI reads)
/// into the admin token named "admin", so existing setups keep working.
/// </summary>
public sealed partial class TokenStore
{
    public const string FirstTokenName = "admin";

    /// <summary>The format version of DATA/tokens.json of older versions (the only one there was).</summary>
    public const int Version = 1;
    public const int MaxTokens = 1000;

    /// <summary>Longer bearer values are not hashed at all: no token is that long.</summary>
    public const int MaxSecretChars = 256;

    /// <summary>Version 1: <see cref="TokenRecord"/>, named by the token's name.</summary>
    public static readonly ControlKind<TokenRecord> Kind = new("token", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });

    private static readonly JsonSerializerOptions FileJson = new(ApiJson.Options) { WriteIndented = true };

    private readonly Lock _lock = new();
    private readonly ControlStore _control;
    private readonly TimeProvider _time;
    private List<TokenRecord> _entries;

    private TokenStore(ControlStore control, TimeProvider time, List<TokenRecord> entries)
    {
        _control = control;
        _time = time;
        _entries = entries;
    }

    /// <summary>
    /// Loads the tokens from the pool, first importing <paramref name="legacyPath"/> (DATA/tokens.json
    /// of an older version) when it exists; with no token at all (first start) makes
    /// <paramref name="firstToken"/> the admin token.
    /// </summary>
    public static TokenStore Open(ControlStore control, string legacyPath, string firstToken, TimeProvider time, ILogger logger)
    {
        LegacyStateFile.Migrate(control, Kind, legacyPath, ReadLegacyFile, logger);
        var entries = control.List(Kind).Select(e => e.Value).ToList();
        var store = new TokenStore(control, time, entries);
        if (entries.Count == 0)
        {
            store._entries = [new TokenRecord(FirstTokenName, TokenRoles.Admin, Hash(firstToken), time.GetUtcNow())];
            store.Save();
        }

        return store;
    }

    private static IEnumerable<KeyValuePair<string, TokenRecord>> ReadLegacyFile(string text)
    {
        var file = JsonSerializer.Deserialize<TokenFile>(text, FileJson);
        if (file is null || file.Version != Version)
        {
            throw new InvalidDataException($"DATA/tokens.json has format version {file?.Version}, this server reads {Version}; restore it from a backup, or move it away to start over with DATA/token as the only (admin) token");
        }

        return file.Tokens.Select(t => new KeyValuePair<string, TokenRecord>(t.Name, t));
    }

    /// <summary>The token with this secret, or null; every stored hash is compared in constant time.</summary>
    public TokenDto? Find(string secret)
    {
        if (secret.Length is 0 or > MaxSecretChars)
        {
            return null;
        }

        var hash = Convert.FromHexString(Hash(secret));
        TokenDto? found = null;
        lock (_lock)
        {
            foreach (var entry in _entries)
            {
                if (CryptographicOperations.FixedTimeEquals(hash, Convert.FromHexString(entry.Sha256)))
                {
                    found = entry.ToDto();
                }
            }
        }

        return found;
    }

    /// <summary>The token named <paramref name="name"/> as it is now, or null once revoked (console sessions check it per request).</summary>
    public TokenDto? Named(string name)
    {
        lock (_lock)
        {
            return _entries.Find(e => e.Name == name)?.ToDto();
        }
    }

    public IReadOnlyList<TokenDto> List()
    {
        lock (_lock)
        {
            return [.. _entries.Select(e => e.ToDto())];
        }
    }

    public CreatedTokenDto Create(string name, string role)
    {
        if (!NamePattern().IsMatch(name) || name is "server" or "anonymous")
        {
            throw new StorageException(StorageError.InvalidName, $"'{name}' is not a token name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (a person's name works: 'alice'); 'server' and 'anonymous' are taken");
        }

        if (TokenRoles.Rank(role) < 0)
        {
            throw new StorageException(StorageError.InvalidArgument, $"'{role}' is not a role; use {string.Join(", ", TokenRoles.All)}");
        }

        var secret = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(32));
        lock (_lock)
        {
            if (_entries.Any(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase)))
            {
                throw new StorageException(StorageError.AlreadyExists, $"a token named {name} exists; revoke it first or choose another name");
            }

            if (_entries.Count >= MaxTokens)
            {
                throw new StorageException(StorageError.InvalidArgument, $"this server already has {MaxTokens} tokens; revoke unused ones first");
            }

            var entry = new TokenRecord(name, role, Hash(secret), _time.GetUtcNow());
            _entries = [.. _entries, entry];
            Save();
            return new CreatedTokenDto(entry.Name, entry.Role, entry.Created, secret);
        }
    }

    public void Revoke(string name)
    {
        lock (_lock)
        {
            var entry = _entries.Find(e => string.Equals(e.Name, name, StringComparison.OrdinalIgnoreCase))
                ?? throw new StorageException(StorageError.NotFound, $"no token named {name}; 'tidemark token list' shows them");
            if (entry.Role == TokenRoles.Admin && _entries.Count(e => e.Role == TokenRoles.Admin) == 1)
            {
                throw new StorageException(StorageError.Busy, $"{name} is the last admin token; create another admin token first, or nobody could manage tokens any more");
            }

            _entries = [.. _entries.Where(e => e != entry)];
            Save();
        }
    }

    private void Save() =>
        _control.ReplaceAll(Kind, _entries.Select(e => new KeyValuePair<string, TokenRecord>(e.Name, e)));

    private static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex NamePattern();

    private sealed record TokenFile(int Version, IReadOnlyList<TokenRecord> Tokens);
}

/// <summary>
/// A token as persisted: its name, role, the SHA-256 of its secret (hex) and when it was made; the
/// layout of an entry of DATA/tokens.json of older versions. Field names are persisted: never rename them.
/// </summary>
public sealed record TokenRecord(string Name, string Role, string Sha256, DateTimeOffset Created)
{
    public TokenDto ToDto() => new(Name, Role, Created);
}
