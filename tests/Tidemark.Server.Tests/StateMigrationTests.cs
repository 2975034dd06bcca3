using System.Security.Cryptography;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// A data directory of an older version, with its state in JSON files, started by this one: every
/// export, snapshot policy, autogrow policy, token and partner is still there, now in the pool's metadata (ADR 0011), and
/// each old file is renamed NAME.migrated, so a second start does not depend on it.
/// </summary>
public sealed class StateMigrationTests : IDisposable
{
    // SHA-256 of "secret-of-alice".
    private const string AliceHash = "2e63581f3ad310ec6d04ce0f6adb96d3a7808722dab1612486486190086013f6";

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

        WriteOldFile(data, "policies.json", """
            [
              {
                "definition": { "name": "hourly", "volume": "db", "group": null, "schedule": "hourly", "timeZone": null,
                  "changedBytes": null, "keepLast": 3, "keepHourly": null, "keepDaily": null, "keepWeekly": null,
                  "keepMonthly": null, "enabled": true },
                "nextRun": "2099-01-01T00:00:00+00:00",
                "lastSnapshotAt": "2026-12-06T06:00:00+00:00",
                "snapshots": [ "auto-1" ],
                "lastError": null,
                "activity": [ { "time": "2026-12-06T06:00:00+00:00", "action": "snapshot", "snapshot": "auto-1", "message": "scheduled" } ]
              }
            ]
            """);
        WriteOldFile(data, "capacity.json", """
            {
              "pool": { "thresholdPercent": 80, "stepBytes": 1073741824, "maxBytes": 10737418240 },
              "volumes": { "db": { "thresholdPercent": 90, "stepBytes": 8388608, "maxBytes": 67108864 } }
            }
            """);

        WriteOldFile(data, "partners.json", """
            [
              { "name": "dr", "address": "127.0.0.1:9", "fingerprint": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", "addedAt": "2026-12-06T05:00:00+00:00" }
            ]
            """);

        var adminHash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(File.ReadAllText(Path.Combine(data, "token")).Trim())));
        WriteOldFile(data, "tokens.json", $$"""
            {
              "version": 1,
              "tokens": [
                { "name": "admin", "role": "admin", "sha256": "{{adminHash}}", "created": "2026-12-06T05:00:00+00:00" },
                { "name": "alice", "role": "auditor", "sha256": "{{AliceHash}}", "created": "2026-12-06T05:00:00+00:00" }
              ]
            }
            """);

        await using (var migrated = await ServerProcess.StartAsync(data))
        {
            using var client = migrated.Client();
            await AssertOldStateAsync(client);
            using var alice = migrated.Client("secret-of-alice");
            Assert.Single(await alice.ListVolumesAsync());
            Assert.Equal(["admin", "alice"], (await client.ListTokensAsync()).Select(t => t.Name));
            Assert.Equal(0, await migrated.StopAsync());
        }

        foreach (var name in new[] { "exports.json", "policies.json", "capacity.json", "tokens.json", "partners.json" })
        {
            Assert.False(File.Exists(Path.Combine(data, name)), name);
            Assert.True(File.Exists(Path.Combine(data, name + ".migrated")), name);
        }

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

        var policy = Assert.Single(await client.ListPoliciesAsync());
        Assert.Equal(("hourly", "db", 3), (policy.Definition.Name, policy.Definition.Volume, policy.Definition.KeepLast));
        Assert.Equal(["auto-1"], policy.Snapshots);
        Assert.Equal("scheduled", Assert.Single(policy.Activity).Message);

        var capacity = await client.GetCapacityPoliciesAsync();
        Assert.Equal(new AutoGrowDto(80, 1L << 30, 10L << 30), capacity.Pool);
        Assert.Equal(new AutoGrowDto(90, 8L << 20, 64L << 20), Assert.Single(capacity.Volumes).Value);

        Assert.Equal(
            new PartnerDto("dr", "127.0.0.1:9", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", new DateTimeOffset(2026, 12, 6, 5, 0, 0, TimeSpan.Zero)),
            Assert.Single(await client.ListPartnersAsync()));
    }

    private static void WriteOldFile(string data, string name, string json)
    {
        var path = Path.Combine(data, name);
        File.WriteAllText(path, json);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead);
    }
}
