using Tidemark.Api;
using Tidemark.Engine.Control;

namespace Tidemark.Server.Capacity;

/// <summary>
/// An autogrow policy as persisted: a control record in the pool (kind "autogrow", version 1; ADR
/// 0011) named "pool" for the pool's policy and "volume:NAME" for a volume's. Its own type, not the
/// API's <see cref="AutoGrowDto"/>; the layout is that of DATA/capacity.json of older versions.
/// Field names are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
public sealed record AutoGrowRecord(int ThresholdPercent, long StepBytes, long MaxBytes)
{
    public const string PoolName = "pool";
    public const string VolumePrefix = "volume:";

    public static readonly ControlKind<AutoGrowRecord> Kind = new("autogrow", 1, json: new(ServerSettings.FileJson) { WriteIndented = false });

    public static AutoGrowRecord From(AutoGrowDto policy) => new(policy.ThresholdPercent, policy.StepBytes, policy.MaxBytes);

    public AutoGrowDto ToDto() => new(ThresholdPercent, StepBytes, MaxBytes);
}
