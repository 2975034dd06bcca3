namespace Tidemark.Api;

public sealed partial class TidemarkClient
{
    // ---- named tokens ----

    public Task<IReadOnlyList<TokenDto>> ListTokensAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<TokenDto>>("tokens", ct);

    public Task<CreatedTokenDto> CreateTokenAsync(CreateTokenRequest request, CancellationToken ct = default) => PostAsync<CreatedTokenDto>("tokens", request, ct);

    public Task RevokeTokenAsync(string name, CancellationToken ct = default) => DeleteAsync($"tokens/{Seg(name)}", ct);

    // ---- alerts ----

    public Task<IReadOnlyList<AlertDto>> ListAlertsAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<AlertDto>>("alerts", ct);

    public Task<AlertThresholdsDto> GetAlertThresholdsAsync(CancellationToken ct = default) => GetAsync<AlertThresholdsDto>("alerts/thresholds", ct);

    public Task<AlertThresholdsDto> SetAlertThresholdsAsync(UpdateAlertThresholdsRequest request, CancellationToken ct = default) => PutAsync<AlertThresholdsDto>("alerts/thresholds", request, ct);

    // ---- audit chain ----

    public Task<EventVerifyDto> VerifyEventsAsync(CancellationToken ct = default) => GetAsync<EventVerifyDto>("events/verify", ct);
}
