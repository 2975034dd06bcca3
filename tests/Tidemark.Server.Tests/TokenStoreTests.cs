using Microsoft.Extensions.Time.Testing;
using Tidemark.Api;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>DATA/tokens.json: its persisted format (golden), hashing, and what it refuses.</summary>
public sealed class TokenStoreTests : IDisposable
{
    private readonly TempDirectory _temp = new();
    private readonly FakeTimeProvider _time = new();

    private string PathOf => _temp.Combine("tokens.json");

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void Open_VersionOneFile_Golden_FindsTheTokenByItsSecret()
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

        var store = TokenStore.Open(PathOf, "first-token-is-not-used-when-the-file-exists", _time);

        Assert.Equal(new TokenDto("alice", TokenRoles.Operator, new DateTimeOffset(2026, 12, 6, 5, 0, 0, TimeSpan.Zero)), store.Find("secret-of-alice"));
        Assert.Null(store.Find("first-token-is-not-used-when-the-file-exists"));
        Assert.Null(store.Find(new string('x', 10_000)));
    }

    [Fact]
    public void Open_FirstStart_MakesTheAdminToken_HashedAndOwnerOnly()
    {
        var store = TokenStore.Open(PathOf, "0123456789abcdef0123456789abcdef", _time);
        var created = store.Create("bob", TokenRoles.Auditor);

        var reopened = TokenStore.Open(PathOf, "ignored", _time);

        Assert.Equal(TokenStore.FirstTokenName, reopened.Find("0123456789abcdef0123456789abcdef")?.Name);
        Assert.Equal(TokenRoles.Auditor, reopened.Find(created.Secret)?.Role);
        Assert.DoesNotContain(created.Secret, File.ReadAllText(PathOf), StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(PathOf));
    }

    [Fact]
    public void CreateAndRevoke_Refusals_AreStorageErrors()
    {
        var store = TokenStore.Open(PathOf, "0123456789abcdef0123456789abcdef", _time);
        store.Create("bob", TokenRoles.Operator);

        Assert.Equal(StorageError.AlreadyExists, Assert.Throws<StorageException>(() => store.Create("BOB", TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => store.Create("server", TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidName, Assert.Throws<StorageException>(() => store.Create(new string('a', 65), TokenRoles.Operator)).Error);
        Assert.Equal(StorageError.InvalidArgument, Assert.Throws<StorageException>(() => store.Create("carol", "root")).Error);
        Assert.Equal(StorageError.Busy, Assert.Throws<StorageException>(() => store.Revoke(TokenStore.FirstTokenName)).Error);
        Assert.Equal(StorageError.NotFound, Assert.Throws<StorageException>(() => store.Revoke("nobody")).Error);
        store.Revoke("bob");
        Assert.Single(store.List());
    }
}
