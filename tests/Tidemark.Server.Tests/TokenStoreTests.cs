using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Named tokens in the pool's control store: the old DATA/tokens.json imported (golden), hashing, and what it refuses.</summary>
public sealed class TokenStoreTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new();
    private Pool _pool;

    public TokenStoreTests()
    {
        _pool = Pool.Create(_temp.Combine("pool"), new PoolOptions { FirstStoreCapacityBytes = 16L << 20 });
    }

    private string PathOf => _temp.Combine("tokens.json");

    public void Dispose()
    {
        _pool.Dispose();
        _temp.Dispose();
    }

    private TokenStore Open(string firstToken) => TokenStore.Open(_pool.Control, PathOf, firstToken, _time, NullLogger.Instance);

    private void Reopen()
    {
        _pool.Dispose();
        _pool = Pool.Open(_temp.Combine("pool"));
    }

    [Fact]
    public void Open_VersionOneFile_Golden_IsImported_AndFindsTheTokenByItsSecret()
    {
        // SHA-256 of "secret-of-alice"; frozen so a change to the file format is a deliberate one.
        File.WriteAllText(PathOf, """
            {
              "version": 1,
              "tokens": [
                { "name": "alice", "role": "operator", "sha256": "2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6", "created": "2026-12-06T05:00:00+00:00" }
              ]
            }
            """);

        Open("first-token-is-not-used-when-the-file-exists");
        Reopen();
        var store = Open("first-token-is-not-used-when-there-are-tokens");

        Assert.Equal(new TokenDto("alice", TokenRoles.Operator, new DateTimeOffset(2026, 12, 6, 5, 0, 0, TimeSpan.Zero)), store.Find("secret-of-alice"));
        Assert.Null(store.Find("first-token-is-not-used-when-the-file-exists"));
        Assert.Null(store.Find(new string('x', 10_000)));
        Assert.False(File.Exists(PathOf));
        Assert.True(File.Exists(PathOf + ".migrated"));
    }

    [Fact]
    public void Open_FileOfAnotherVersion_IsRefused_AndLeftInPlace()
    {
        File.WriteAllText(PathOf, """{ "version": 2, "tokens": [] }""");

        var ex = Assert.Throws<InvalidDataException>(() => Open("0123456789abcdef0123456789abcdef"));

        Assert.Contains("format version 2", ex.Message, StringComparison.Ordinal);
        Assert.True(File.Exists(PathOf));
        Assert.Empty(_pool.Control.List(TokenStore.Kind));
    }

    [Fact]
    public void Open_FirstStart_MakesTheAdminToken_StoresOnlyHashes()
    {
        var store = Open("0123456789abcdef0123456789abcdef");
        var created = store.Create("bob", TokenRoles.Auditor);

        Reopen();
        var reopened = Open("ignored");

        Assert.Equal(TokenStore.FirstTokenName, reopened.Find("0123456789abcdef0123456789abcdef")?.Name);
        Assert.Equal(TokenRoles.Auditor, reopened.Find(created.Secret)?.Role);
        Assert.Null(reopened.Find("ignored"));
        Assert.DoesNotContain(_pool.Control.List(TokenStore.Kind), e => e.Value.Sha256.Contains(created.Secret, StringComparison.Ordinal));
    }

    [Fact]
    public void CreateAndRevoke_Refusals_AreStorageErrors()
    {
        var store = Open("0123456789abcdef0123456789abcdef");
        store.Create("bob", TokenRoles.Operator);

        Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => store.Create("BOB", TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => store.Create("server", TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => store.Create(new string('a', 65), TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidArgument, Assert.Throws<StorageException>(() => store.Create("carol", "root")).Error);
        Assert.Equal(StorageError.Busy, Assert.Throws<StorageException>(() => store.Revoke(TokenStore.FirstTokenName)).Error);
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => store.Revoke("nobody")).Error);
        store.Revoke("bob");
        Assert.Single(store.List());
        Assert.Single(_pool.Control.List(TokenStore.Kind));
    }
}
