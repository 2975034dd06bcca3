using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;

namespace Tidemark.Api;

/// <summary>
/// Typed client of the REST API (/api/v1). Every method throws <see cref="TidemarkApiException"/> with
/// the server's problem code and detail when the server refuses, and <see cref="HttpRequestException"/>
/// when it cannot be reached.
/// </summary>
public sealed partial class TidemarkClient : IDisposable
{
    public const string ApiPrefix = "api/v1/";

    private readonly HttpClient _http;
    private readonly bool _ownsHttp;

    /// <summary>Uses <paramref name="http"/> as it is (its BaseAddress must be the server's root).</summary>
    public TidemarkClient(HttpClient http, string? token, bool ownsHttp = false)
    {
        ArgumentNullException.ThrowIfNull(http);
        _http = http;
        _ownsHttp = ownsHttp;
        if (token is not null)
        {
            _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
    }

    public TidemarkClient(Uri server, string? token, TimeSpan? timeout = null)
        : this(new HttpClient { BaseAddress = server, Timeout = timeout ?? TimeSpan.FromMinutes(10) }, token, ownsHttp: true)
    {
    }

    public Uri? BaseAddress => _http.BaseAddress;

    // ---- pool ----

    public Task<PoolDto> GetPoolAsync(CancellationToken ct = default) => GetAsync<PoolDto>("pool", ct);

    public Task<PoolDto> AddStoreAsync(AddStoreRequest request, CancellationToken ct = default) => PostAsync<PoolDto>("pool/stores", request, ct);

    /// <summary>Verifies the pool; a long check runs as a job that this follows to its end (<paramref name="progress"/> sees it).</summary>
    public async Task<VerifyDto> VerifyAsync(Action<JobDto>? progress = null, CancellationToken ct = default) =>
        await RunJobAsync<VerifyDto>(HttpMethod.Post, "pool/verify", progress, ct)
        ?? throw new TidemarkApiException(HttpStatusCode.InternalServerError, ErrorCodes.Internal, "the server sent no verify report");

    // ---- volumes and views ----

    public Task<IReadOnlyList<VolumeDto>> ListVolumesAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<VolumeDto>>("volumes", ct);

    public Task<VolumeDto> GetVolumeAsync(string name, CancellationToken ct = default) => GetAsync<VolumeDto>($"volumes/{Seg(name)}", ct);

    public Task<VolumeDto> CreateVolumeAsync(CreateVolumeRequest request, CancellationToken ct = default) => PostAsync<VolumeDto>("volumes", request, ct);

    public Task<VolumeDto> ResizeVolumeAsync(string name, long sizeBytes, CancellationToken ct = default) =>
        PostAsync<VolumeDto>($"volumes/{Seg(name)}/resize", new ResizeVolumeRequest(sizeBytes), ct);

    /// <summary>Deletes a volume or view; when freeing its space takes long, follows the job to its end.</summary>
    public Task DeleteVolumeAsync(string name, Action<JobDto>? progress = null, CancellationToken ct = default) =>
        RunJobAsync<object>(HttpMethod.Delete, $"volumes/{Seg(name)}", progress, ct);

    public Task<RollbackResult> RollbackAsync(string volume, string snapshot, CancellationToken ct = default) =>
        RollbackAsync(volume, snapshot, force: false, ct);

    public Task<RollbackResult> RollbackAsync(string volume, string snapshot, bool force, CancellationToken ct = default) =>
        PostAsync<RollbackResult>($"volumes/{Seg(volume)}/rollback", new RollbackRequest(snapshot, force), ct);

    public Task<VolumeDto> CreateViewAsync(string snapshotAddress, string viewName, CancellationToken ct = default) =>
        CreateViewAsync(new CreateViewRequest(snapshotAddress, viewName), ct);

    public Task<VolumeDto> CreateViewAsync(CreateViewRequest request, CancellationToken ct = default) =>
        PostAsync<VolumeDto>("views", request, ct);

    public Task<VolumeDto> PromoteViewAsync(string viewName, CancellationToken ct = default) =>
        PostAsync<VolumeDto>($"views/{Seg(viewName)}/promote", null, ct);

    // ---- snapshots ----

    public Task<IReadOnlyList<SnapshotDto>> ListSnapshotsAsync(string volume, CancellationToken ct = default) =>
        GetAsync<IReadOnlyList<SnapshotDto>>($"volumes/{Seg(volume)}/snapshots", ct);

    public Task<SnapshotDto> CreateSnapshotAsync(string volume, string? name = null, CancellationToken ct = default) =>
        PostAsync<SnapshotDto>($"volumes/{Seg(volume)}/snapshots", new CreateSnapshotRequest(name), ct);

    public Task<SnapshotDto> CreateSnapshotAsync(string volume, CreateSnapshotRequest request, CancellationToken ct = default) =>
        PostAsync<SnapshotDto>($"volumes/{Seg(volume)}/snapshots", request, ct);

    public Task<SnapshotDto> GetSnapshotAsync(string address, CancellationToken ct = default) => GetAsync<SnapshotDto>(SnapshotPath(address), ct);

    /// <summary>Deletes a snapshot; when freeing its space takes long, follows the job to its end.</summary>
    public Task DeleteSnapshotAsync(string address, Action<JobDto>? progress = null, CancellationToken ct = default) =>
        RunJobAsync<object>(HttpMethod.Delete, SnapshotPath(address), progress, ct);

    public Task<SnapshotDto> HoldSnapshotAsync(string address, HoldRequest request, CancellationToken ct = default) =>
        PostAsync<SnapshotDto>(SnapshotPath(address) + "/hold", request, ct);

    public Task<SnapshotDto> ReleaseHoldAsync(string address, CancellationToken ct = default) =>
        PostAsync<SnapshotDto>(SnapshotPath(address) + "/release", null, ct);

    public Task<SnapshotUsageDto> GetSnapshotUsageAsync(string address, CancellationToken ct = default) =>
        GetAsync<SnapshotUsageDto>(SnapshotPath(address) + "/usage", ct);

    /// <summary>One page of changed ranges between <paramref name="from"/> and <paramref name="to"/> (null: live).</summary>
    public Task<DiffPageDto> DiffAsync(string volume, string from, string? to = null, int offset = 0, int? limit = null, CancellationToken ct = default)
    {
        var query = $"volumes/{Seg(volume)}/diff?from={Uri.EscapeDataString(from)}&offset={offset.ToString(CultureInfo.InvariantCulture)}";
        if (to is not null)
        {
            query += $"&to={Uri.EscapeDataString(to)}";
        }

        if (limit is { } l)
        {
            query += $"&limit={l.ToString(CultureInfo.InvariantCulture)}";
        }

        return GetAsync<DiffPageDto>(query, ct);
    }

    // ---- groups ----

    public Task<IReadOnlyList<GroupDto>> ListGroupsAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<GroupDto>>("groups", ct);

    public Task<GroupDto> CreateGroupAsync(CreateGroupRequest request, CancellationToken ct = default) => PostAsync<GroupDto>("groups", request, ct);

    public Task DeleteGroupAsync(string name, CancellationToken ct = default) => DeleteAsync($"groups/{Seg(name)}", ct);

    public Task<IReadOnlyList<SnapshotDto>> SnapshotGroupAsync(string name, string? snapshotName = null, CancellationToken ct = default) =>
        PostAsync<IReadOnlyList<SnapshotDto>>($"groups/{Seg(name)}/snapshots", new CreateSnapshotRequest(snapshotName), ct);

    public Task<IReadOnlyList<SnapshotDto>> SnapshotGroupAsync(string name, CreateSnapshotRequest request, CancellationToken ct = default) =>
        PostAsync<IReadOnlyList<SnapshotDto>>($"groups/{Seg(name)}/snapshots", request, ct);

    // ---- exports ----

    public Task<IReadOnlyList<ExportDto>> ListExportsAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<ExportDto>>("exports", ct);

    public Task<ExportDto> CreateExportAsync(CreateExportRequest request, CancellationToken ct = default) => PostAsync<ExportDto>("exports", request, ct);

    public Task DeleteExportAsync(string name, CancellationToken ct = default) => DeleteAsync($"exports/{Seg(name)}", ct);

    public void Dispose()
    {
        if (_ownsHttp)
        {
            _http.Dispose();
        }
    }

    /// <summary>"vol@snap" becomes volumes/vol/snapshots/snap; a malformed address is refused before any request.</summary>
    private static string SnapshotPath(string address)
    {
        var at = address.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at == address.Length - 1)
        {
            throw new TidemarkApiException(HttpStatusCode.BadRequest, ErrorCodes.For(StorageError.InvalidName), $"'{address}' is not a snapshot address; write it as VOLUME@SNAPSHOT");
        }

        return $"volumes/{Seg(address[..at])}/snapshots/{Seg(address[(at + 1)..])}";
    }

    private static string Seg(string value) => Uri.EscapeDataString(value);

    private async Task<T> GetAsync<T>(string path, CancellationToken ct)
    {
        using var response = await _http.GetAsync(ApiPrefix + path, ct);
        return await ReadAsync<T>(response, ct);
    }

    private async Task<T> PostAsync<T>(string path, object? body, CancellationToken ct)
    {
        using var content = body is null ? null : JsonContent.Create(body, body.GetType(), options: ApiJson.Options);
        using var response = await _http.PostAsync(ApiPrefix + path, content, ct);
        return await ReadAsync<T>(response, ct);
    }

    private async Task DeleteAsync(string path, CancellationToken ct)
    {
        using var response = await _http.DeleteAsync(ApiPrefix + path, ct);
        await ThrowIfFailedAsync(response, ct);
    }

    private static async Task<T> ReadAsync<T>(HttpResponseMessage response, CancellationToken ct)
    {
        await ThrowIfFailedAsync(response, ct);
        return await response.Content.ReadFromJsonAsync<T>(ApiJson.Options, ct)
            ?? throw new TidemarkApiException(response.StatusCode, ErrorCodes.Internal, "the server sent an empty answer");
    }

    private static async Task ThrowIfFailedAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if (response.IsSuccessStatusCode)
        {
            return;
        }

        ProblemDto? problem = null;
        try
        {
            problem = await response.Content.ReadFromJsonAsync<ProblemDto>(ApiJson.Options, ct);
        }
        catch (JsonException)
        {
            // Not problem details (a proxy's page, for example): report the status alone.
        }
        catch (NotSupportedException)
        {
            // No JSON content type at all.
        }

        var code = problem?.Code ?? (response.StatusCode == HttpStatusCode.Unauthorized ? ErrorCodes.Unauthorized : ErrorCodes.Internal);
        var detail = problem?.Detail ?? problem?.Title ?? $"the server answered {(int)response.StatusCode} {response.ReasonPhrase}";
        throw new TidemarkApiException(response.StatusCode, code, detail);
    }
}
