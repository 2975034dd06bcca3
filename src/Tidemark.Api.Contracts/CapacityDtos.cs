namespace Tidemark.Api;

/// <summary>
/// Capacity on demand for the pool or one volume: when used space passes <paramref name="ThresholdPercent"/>
/// of capacity (of the pool's stores, or of the volume's virtual size), grow by <paramref name="StepBytes"/>,
/// never beyond <paramref name="MaxBytes"/>.
/// </summary>
public sealed record AutoGrowDto(int ThresholdPercent, long StepBytes, long MaxBytes);

/// <summary>The pool's and every volume's autogrow policy; null where none is set.</summary>
public sealed record CapacityPoliciesDto(AutoGrowDto? Pool, IReadOnlyDictionary<string, AutoGrowDto> Volumes);
