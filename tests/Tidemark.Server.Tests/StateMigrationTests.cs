using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// A data directory of an older version, with its state in JSON files, started by this one: every
/// export, policy and autogrow policy is still there, now in the pool's metadata (ADR 0011), and
/// each old file is renamed NAME.migrated, so a second start does not depend on it.
/// </summary>
public sealed class StateMigrationTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task Start_OnOldStateFiles_KeepsEverything_AndRenamesTheFiles()
    {
        var data = _temp.Combine("data");
        await using (var first = await ServerProcess.StartAsync(data))
        {
            using var client = first.Client();
            await client.CreateVolumeAsync(new CreateVolumeRequest("db", 8 << 20));
            await client.CreateSnapshotAsync("db", "auto-1");
            Assert.Equal(0, await first.StopAsync());
        }

        WriteOldFile(data, "exports.json", """
            [
              { "name": "db", "protocol": "nbd", "target": "db", "readOnly": false },
              { "name": "db-ro", "protocol": "nbd", "target": "db@auto-1", "readOnly": true, "tlsRequired": false },
              { "name": "secure", "protocol": "iscsi", "target": "db", "readOnly": false, "luns": [ "db" ],
                "iqn": "iqn.2026-11.dev.tidemark:secure", "allowedInitiators": [ "iqn.2026-11.dev.client:a" ],
                "chap": { "user": "alice", "secret": "alice-secret-12" } }
            ]
            """);

        await using (var migrated = await ServerProcess.StartAsync(data))
        {
            using var client = migrated.Client();
            await AssertOldStateAsync(client);
            Assert.Equal(0, await migrated.StopAsync());
        }

        Assert.False(File.Exists(Path.Combine(data, "exports.json")));
        Assert.True(File.Exists(Path.Combine(data, "exports.json.migrated")));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, "exports.json.migrated")));

        await using var again = await ServerProcess.StartAsync(data);
        using var againClient = again.Client();
        await AssertOldStateAsync(againClient);
    }

    private static async Task AssertOldStateAsync(TidemarkClient client)
    {
        var exports = await client.ListExportsAsync();
        Assert.Equal(["db", "db-ro", "secure"], exports.Select(e => e.Name));
        Assert.All(exports, e => Assert.Equal("online", e.State));
        Assert.Equal((false, true), (exports[0].ReadOnly, exports[1].ReadOnly));
        Assert.Equal(("alice", "iqn.2026-11.dev.tidemark:secure"), (exports[2].ChapUser, exports[2].Iqn));
    }

    private static void WriteOldFile(string data, string name, string json)
    {
        var path = Path.Combine(data, name);
        File.WriteAllText(path, json);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
    }
}
