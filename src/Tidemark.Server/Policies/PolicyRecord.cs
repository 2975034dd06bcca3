using System.Text.Json.Serialization;
using Tidemark.Api;
using Tidemark.Engine.Control;

namespace Tidemark.Server.Policies;

/// <summary>
/// A snapshot policy as persisted: a control record in the pool (kind "policy", version 1, named by
/// the policy; ADR 0011) with its definition and what it has done. Its own type, not the API's
/// <see cref="PolicyRequest"/>: the API may change without a migration. The layout is that of an
/// entry of DATA/policies.json of older versions, so such a file imports as it is. Field names are
/// persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
public sealed record PolicyRecord(
    PolicyDefinitionRecord Definition,
    DateTimeOffset? NextRun,
    DateTimeOffset? LastSnapshotAt,
    IReadOnlyList<string>? Snapshots,
    string? LastError,
    IReadOnlyList<PolicyActivityRecord>? Activity)
{
    public static readonly ControlKind<PolicyRecord> Kind = new("policy", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });
}

/// <summary>What the administrator asked for (see <see cref="PolicyRequest"/> for the meaning of each field).</summary>
public sealed record PolicyDefinitionRecord(
    string Name,
    string? Volume,
    string? Group,
    string? Schedule,
    string? TimeZone,
    long? ChangedBytes,
    int? KeepLast,
    int? KeepHourly,
    int? KeepDaily,
    int? KeepWeekly,
    int? KeepMonthly,
    bool Enabled = true,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<string>? Hosts = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Fallback = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? Verify = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? PreferConsistent = null,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] bool? IndexMail = null)
{
    // Hosts, Fallback, Verify, PreferConsistent (ADR 0015) and IndexMail (ADR 0012) are optional fields, left out when null so a policy without agents
    // is stored byte for byte as before: older records read as "no agents" (ADR 0011, no version bump).
    public static PolicyDefinitionRecord From(PolicyRequest r) =>
        new(r.Name, r.Volume, r.Group, r.Schedule, r.TimeZone, r.ChangedBytes, r.KeepLast, r.KeepHourly, r.KeepDaily, r.KeepWeekly, r.KeepMonthly, r.Enabled, r.Hosts is { Count: > 0 } ? r.Hosts : null, r.Fallback, r.Verify, r.PreferConsistent, r.IndexMail);

    public PolicyRequest ToRequest() =>
        new(Name, Volume, Group, Schedule, TimeZone, ChangedBytes, KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, Enabled, Hosts, Fallback, Verify, PreferConsistent, IndexMail);
}

/// <summary>One thing a policy did, or declined to do, and why.</summary>
public sealed record PolicyActivityRecord(DateTimeOffset Time, string Action, string? Snapshot, string Message);
