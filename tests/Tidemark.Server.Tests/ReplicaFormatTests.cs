using System.Text.Json;
using Tidemark.Replication;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Tests;

/// <summary>
/// DATA/incoming.json of older versions kept what a DR site trusts (issue 16): the newest replicated
/// snapshot by id, the commit sequence and the role generation. Such a file is imported into the
/// pool's "incoming" records (ADR 0011; their own encoding is frozen in ControlRecordGoldenTests):
/// an entry of its last layout, frozen here, reads field for field, and entries written before those
/// fields existed still load (as sequence 0, generation 0, newest snapshot by name).
/// </summary>
public sealed class ReplicaFormatTests
{
    private const string Golden = """
        {
          "volume": "mail",
          "partner": "home",
          "sourceVolume": "mail",
          "lastSnapshot": "repl-20261206-050000-000",
          "lastSnapshotCreatedAt": "2026-12-06T05:00:00+00:00",
          "lastReceivedAt": "2026-12-06T05:00:01+00:00",
          "promoted": false,
          "group": null,
          "standbyExports": null,
          "keepLast": null,
          "lastSnapshotId": "6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10",
          "sequence": 7,
          "generation": 2
        }
        """;

    [Fact]
    public void OldIncomingFileEntry_ImportsFieldForField()
    {
        var record = new IncomingRecord(
            "mail",
            "home",
            "mail",
            "repl-20261206-050000-000",
            new DateTimeOffset(2026, 12, 6, 5, 0, 0, TimeSpan.Zero),
            new DateTimeOffset(2026, 12, 6, 5, 0, 1, TimeSpan.Zero),
            LastSnapshotId: Guid.Parse("6f1c2a55-8c1e-4b7e-9d1a-3f0c2b9e7a10"),
            Sequence: 7,
            Generation: 2);

        Assert.Equal(record, JsonSerializer.Deserialize<IncomingRecord>(Golden, ServerSettings.FileJson));
    }

    [Fact]
    public void OldIncomingFileEntry_WrittenBeforeSequencesAndGenerations_LoadsWithTheirZeroValues()
    {
        const string Old = """{ "volume": "mail", "partner": "home", "sourceVolume": "mail", "lastSnapshot": "repl-1", "lastSnapshotCreatedAt": null, "lastReceivedAt": null, "promoted": true, "group": null, "keepLast": 48 }""";

        var record = JsonSerializer.Deserialize<IncomingRecord>(Old, ServerSettings.FileJson)!;

        Assert.Equal(("repl-1", 48), (record.LastSnapshot, record.KeepLast));
        Assert.Null(record.LastSnapshotId);
        Assert.Equal((0L, 0L), (record.Sequence, record.Generation));
    }
}
