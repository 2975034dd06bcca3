using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;

namespace Tidemark.Api;

/// <summary>The operational resources: the event and audit log, jobs, metrics.</summary>
public sealed partial class TidemarkClient
{
    /// <summary>
    /// Events oldest first: after <paramref name="after"/> when given (paging forward through one log,
    /// the main one unless <paramref name="log"/> is "refused"), else the newest <paramref name="limit"/>
    /// of both logs (or the one <paramref name="log"/> names) in time order.
    /// </summary>
    public Task<IReadOnlyList<EventDto>> ListEventsAsync(long? after = null, string? kind = null, string? subject = null, DateTimeOffset? since = null, int? limit = null, string? log = null, CancellationToken ct = default)
    {
        var query = new StringBuilder("events?");
        if (log is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"log={Uri.EscapeDataString(log)}&");
        }

        if (after is { } a)
        {
            query.Append(CultureInfo.InvariantCulture, $"after={a}&");
        }

        if (kind is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"kind={Uri.EscapeDataString(kind)}&");
        }

        if (subject is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"subject={Uri.EscapeDataString(subject)}&");
        }

        if (since is { } s)
        {
            query.Append(CultureInfo.InvariantCulture, $"since={Uri.EscapeDataString(s.ToString("O", CultureInfo.InvariantCulture))}&");
        }

        if (limit is { } l)
        {
            query.Append(CultureInfo.InvariantCulture, $"limit={l}&");
        }

        return GetAsync<IReadOnlyList<EventDto>>(query.ToString().TrimEnd('&', '?'), ct);
    }

    public Task<IReadOnlyList<JobDto>> ListJobsAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<JobDto>>("jobs", ct);

    public Task<JobDto> GetJobAsync(string id, CancellationToken ct = default) => GetAsync<JobDto>($"jobs/{Seg(id)}", ct);

    public Task<JobDto> CancelJobAsync(string id, CancellationToken ct = default) => PostAsync<JobDto>($"jobs/{Seg(id)}/cancel", null, ct);

    /// <summary>
    /// Follows a job until it ends, showing each state to <paramref name="progress"/>; returns the final
    /// state. Each poll is a long poll (<c>?wait=</c>): the server answers as soon as the job ends, so
    /// its end is not learnt up to a poll interval late (issue 23); a server that ignores the wait
    /// answers at once, and then the rest of the interval is slept as before.
    /// </summary>
    public async Task<JobDto> WaitForJobAsync(string id, Action<JobDto>? progress = null, CancellationToken ct = default)
    {
        var wait = JobPollInterval.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        while (true)
        {
            var asked = System.Diagnostics.Stopwatch.GetTimestamp();
            var job = await GetAsync<JobDto>($"jobs/{Seg(id)}?wait={wait}", ct);
            progress?.Invoke(job);
            if (job.State != "running")
            {
                return job;
            }

            var left = JobPollInterval - System.Diagnostics.Stopwatch.GetElapsedTime(asked);
            if (left > TimeSpan.Zero)
            {
                await Task.Delay(left, ct);
            }
        }
    }

    /// <summary>How often a running job is polled.</summary>
    public static TimeSpan JobPollInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Sends a request that may start a job: an ordinary answer is read as <typeparamref name="T"/>;
    /// 202 Accepted is followed to the job's end, whose result is read as <typeparamref name="T"/>
    /// (or whose failure is thrown like any refusal).
    /// </summary>
    private async Task<T?> RunJobAsync<T>(HttpMethod method, string path, Action<JobDto>? progress, CancellationToken ct, object? body = null)
    {
        using var request = new HttpRequestMessage(method, ApiPrefix + path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType(), options: ApiJson.Options);
        }

        using var response = await _http.SendAsync(request, ct);
        await ThrowIfFailedAsync(response, ct);
        if (response.StatusCode == HttpStatusCode.NoContent)
        {
            return default;
        }

        if (response.StatusCode != HttpStatusCode.Accepted)
        {
            return await response.Content.ReadFromJsonAsync<T>(ApiJson.Options, ct);
        }

        var started = await response.Content.ReadFromJsonAsync<JobDto>(ApiJson.Options, ct)
            ?? throw new TidemarkApiException(response.StatusCode, ErrorCodes.Internal, "the server accepted the request but sent no job");
        progress?.Invoke(started);
        var job = await WaitForJobAsync(started.Id, progress, ct);
        if (job.State != "succeeded")
        {
            throw new TidemarkApiException(HttpStatusCode.Conflict, job.ErrorCode ?? ErrorCodes.Internal, $"job {job.Id} ({job.Kind}) {job.State}: {job.Error}");
        }

        return job.Result is { } result ? result.Deserialize<T>(ApiJson.Options) : default;
    }

    public Task<CapacityPoliciesDto> GetCapacityPoliciesAsync(CancellationToken ct = default) => GetAsync<CapacityPoliciesDto>("capacity", ct);

    /// <summary>Runs the capacity check now (autogrow of the pool and volumes) instead of at the next tick.</summary>
    public Task<CapacityPoliciesDto> CheckCapacityAsync(CancellationToken ct = default) => PostAsync<CapacityPoliciesDto>("capacity/check", null, ct);

    public Task<CapacityPoliciesDto> SetPoolAutogrowAsync(AutoGrowDto policy, CancellationToken ct = default) => PutAsync<CapacityPoliciesDto>("pool/autogrow", policy, ct);

    public Task DisablePoolAutogrowAsync(CancellationToken ct = default) => DeleteAsync("pool/autogrow", ct);

    public Task<AutoGrowDto> SetVolumeAutogrowAsync(string volume, AutoGrowDto policy, CancellationToken ct = default) => PutAsync<AutoGrowDto>($"volumes/{Seg(volume)}/autogrow", policy, ct);

    public Task DisableVolumeAutogrowAsync(string volume, CancellationToken ct = default) => DeleteAsync($"volumes/{Seg(volume)}/autogrow", ct);

    public Task<IdentityDto> GetIdentityAsync(CancellationToken ct = default) => GetAsync<IdentityDto>("identity", ct);

    public Task<IReadOnlyList<PartnerDto>> ListPartnersAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<PartnerDto>>("partners", ct);

    public Task<PartnerDto> AddPartnerAsync(AddPartnerRequest request, CancellationToken ct = default) => PostAsync<PartnerDto>("partners", request, ct);

    public Task RemovePartnerAsync(string name, CancellationToken ct = default) => DeleteAsync($"partners/{Seg(name)}", ct);

    /// <summary>Connects to the partner over the replication link (mutual TLS) and returns its answer.</summary>
    public Task<PartnerHelloDto> TestPartnerAsync(string name, CancellationToken ct = default) => PostAsync<PartnerHelloDto>($"partners/{Seg(name)}/test", null, ct);

    public Task<IReadOnlyList<PolicyDto>> ListPoliciesAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<PolicyDto>>("policies", ct);

    public Task<PolicyDto> GetPolicyAsync(string name, CancellationToken ct = default) => GetAsync<PolicyDto>($"policies/{Seg(name)}", ct);

    public Task<PolicyDto> CreatePolicyAsync(PolicyRequest request, CancellationToken ct = default) => PostAsync<PolicyDto>("policies", request, ct);

    public Task<PolicyDto> UpdatePolicyAsync(PolicyRequest request, CancellationToken ct = default) => PutAsync<PolicyDto>($"policies/{Seg(request.Name)}", request, ct);

    public Task DeletePolicyAsync(string name, CancellationToken ct = default) => DeleteAsync($"policies/{Seg(name)}", ct);

    /// <summary>Takes the policy's snapshot now and applies its retention.</summary>
    public Task<PolicyDto> RunPolicyAsync(string name, CancellationToken ct = default) => PostAsync<PolicyDto>($"policies/{Seg(name)}/run", null, ct);

    /// <summary>Writes a snapshot stream (full, or incremental from <paramref name="from"/>) to <paramref name="destination"/>; returns its length.</summary>
    public async Task<long> ExportSnapshotAsync(string address, string? from, int? level, Stream destination, CancellationToken ct = default)
    {
        var at = address.IndexOf('@', StringComparison.Ordinal);
        if (at <= 0 || at == address.Length - 1)
        {
            throw new TidemarkApiException(HttpStatusCode.BadRequest, ErrorCodes.For(StorageError.InvalidName), $"'{address}' is not a snapshot address; write it as VOLUME@SNAPSHOT");
        }

        var query = new StringBuilder($"volumes/{Seg(address[..at])}/snapshots/{Seg(address[(at + 1)..])}/stream?");
        if (from is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"from={Uri.EscapeDataString(from)}&");
        }

        if (level is { } l)
        {
            query.Append(CultureInfo.InvariantCulture, $"level={l}&");
        }

        using var response = await _http.GetAsync(ApiPrefix + query.ToString().TrimEnd('&', '?'), HttpCompletionOption.ResponseHeadersRead, ct);
        await ThrowIfFailedAsync(response, ct);
        await using var body = await response.Content.ReadAsStreamAsync(ct);
        var counting = 0L;
        var buffer = new byte[1 << 20];
        int read;
        while ((read = await body.ReadAsync(buffer, ct)) > 0)
        {
            await destination.WriteAsync(buffer.AsMemory(0, read), ct);
            counting += read;
        }

        return counting;
    }

    /// <summary>Sends a snapshot stream to the server, which creates the snapshot (and, for a full stream, the volume).</summary>
    public async Task<StreamImportDto> ImportSnapshotAsync(Stream source, string? volume = null, CancellationToken ct = default)
    {
        using var content = new StreamContent(source, 1 << 20);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/vnd.tidemark.snapshot-stream");
        var path = "streams" + (volume is null ? "" : $"?volume={Uri.EscapeDataString(volume)}");
        using var response = await _http.PostAsync(ApiPrefix + path, content, ct);
        return await ReadAsync<StreamImportDto>(response, ct);
    }

    public Task<IReadOnlyList<ReplicaDto>> ListReplicasAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<ReplicaDto>>("replicas", ct);

    public Task<ReplicaDto> GetReplicaAsync(string volume, CancellationToken ct = default) => GetAsync<ReplicaDto>($"replicas/{Seg(volume)}", ct);

    public Task<ReplicaDto> CreateReplicaAsync(CreateReplicaRequest request, CancellationToken ct = default) => PostAsync<ReplicaDto>("replicas", request, ct);

    public Task DeleteReplicaAsync(string volume, CancellationToken ct = default) => DeleteAsync($"replicas/{Seg(volume)}", ct);

    public Task<ReplicaDto> UpdateReplicaAsync(string volume, UpdateReplicaRequest request, CancellationToken ct = default) => PatchAsync<ReplicaDto>($"replicas/{Seg(volume)}", request, ct);

    /// <summary>Runs one replication cycle (a job the client follows to its end).</summary>
    public async Task<ReplicaDto> SyncReplicaAsync(string volume, Action<JobDto>? progress = null, CancellationToken ct = default) =>
        await RunJobAsync<ReplicaDto>(HttpMethod.Post, $"replicas/{Seg(volume)}/sync", progress, ct)
        ?? throw new TidemarkApiException(HttpStatusCode.InternalServerError, ErrorCodes.Internal, "the server sent no replica state");

    /// <summary>At the DR site: makes a replica volume a writable primary at its newest complete snapshot (at home after a fail-back: the primary again).</summary>
    public Task<PromoteResultDto> PromoteReplicaAsync(string volume, CancellationToken ct = default) => PostAsync<PromoteResultDto>($"incoming/{Seg(volume)}/promote", null, ct);

    /// <summary>Makes a promoted replica a replica again (normally done by the other site's fail-back promotion).</summary>
    public Task<DemoteResultDto> DemoteReplicaAsync(string volume, CancellationToken ct = default) => PostAsync<DemoteResultDto>($"incoming/{Seg(volume)}/demote", null, ct);

    /// <summary>At the receiving site: offers an existing volume as a replica target of a partner (needed before it seeds over it).</summary>
    public Task<AcceptReplicaResultDto> AcceptReplicaAsync(string volume, AcceptReplicaRequest request, CancellationToken ct = default) =>
        PostAsync<AcceptReplicaResultDto>($"incoming/{Seg(volume)}/accept", request, ct);

    /// <summary>At the DR site: how many replicated snapshots a replica (or every member of a replicated group) keeps.</summary>
    public Task<IReadOnlyList<IncomingReplicaDto>> SetReplicaRetentionAsync(string volume, int keepLast, CancellationToken ct = default) =>
        PutAsync<IReadOnlyList<IncomingReplicaDto>>($"incoming/{Seg(volume)}/retention", new ReplicaRetentionRequest(keepLast), ct);

    /// <summary>Volumes replicated into this server.</summary>
    public Task<IReadOnlyList<IncomingReplicaDto>> ListIncomingAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<IncomingReplicaDto>>("incoming", ct);

    /// <summary>Fail-back: sends a promoted replica back to the volume it came from (a job the client follows to its end).</summary>
    public async Task<ReplicaDto> ReverseReplicaAsync(string volume, Action<JobDto>? progress = null, string? discardWritesAt = null, CancellationToken ct = default) =>
        await RunJobAsync<ReplicaDto>(HttpMethod.Post, $"incoming/{Seg(volume)}/reverse{(discardWritesAt is null ? "" : $"?discardWritesAt={Uri.EscapeDataString(discardWritesAt)}")}", progress, ct)
        ?? throw new TidemarkApiException(HttpStatusCode.InternalServerError, ErrorCodes.Internal, "the server sent no replica state");

    private async Task<T> PatchAsync<T>(string path, object body, CancellationToken ct)
    {
        using var content = JsonContent.Create(body, body.GetType(), options: ApiJson.Options);
        using var response = await _http.PatchAsync(ApiPrefix + path, content, ct);
        return await ReadAsync<T>(response, ct);
    }

    private async Task<T> PutAsync<T>(string path, object body, CancellationToken ct)
    {
        using var content = JsonContent.Create(body, body.GetType(), options: ApiJson.Options);
        using var response = await _http.PutAsync(ApiPrefix + path, content, ct);
        return await ReadAsync<T>(response, ct);
    }
}
