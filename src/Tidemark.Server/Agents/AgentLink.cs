using System.Net.Http.Json;
using Tidemark.Api;
using Tidemark.Server.Replication;

namespace Tidemark.Server.Agents;

/// <summary>
/// Calls one host's agent over HTTPS (TLS 1.3): the server presents its identity certificate and
/// accepts only the host's pinned one, the same link a partner gets (<see cref="PartnerLink"/>).
/// </summary>
public sealed class AgentLink : IDisposable
{
    public const string PathPrefix = "agent/v1/";

    private readonly HttpClient _http;
    private readonly HostRecord _host;

    public AgentLink(ServerIdentity identity, HostRecord host, TimeSpan timeout)
    {
        _host = host;
        _http = PartnerLink.Create(identity, new PartnerDto(host.Name, host.Address, host.Fingerprint, host.AddedAt), timeout);
    }

    public string Host => _host.Name;

    public Task<AgentStatusDto> StatusAsync(CancellationToken ct) => SendAsync<AgentStatusDto>(HttpMethod.Get, "status", null, ct);

    public Task<IReadOnlyList<AgentMountDto>> MountsAsync(CancellationToken ct) => SendAsync<IReadOnlyList<AgentMountDto>>(HttpMethod.Get, "mounts", null, ct);

    public Task<QuiesceResultDto> QuiesceAsync(QuiesceRequest request, CancellationToken ct) => SendAsync<QuiesceResultDto>(HttpMethod.Post, "quiesce", request, ct);

    public Task<ResumeResultDto> ResumeAsync(string session, CancellationToken ct) =>
        SendAsync<ResumeResultDto>(HttpMethod.Post, $"sessions/{Uri.EscapeDataString(session)}/resume", null, ct);

    public Task<VerifyResultDto> VerifyAsync(VerifyRequest request, CancellationToken ct) => SendAsync<VerifyResultDto>(HttpMethod.Post, "verify", request, ct);

    public Task<MailRecoveryResultDto> RecoverMailAsync(AgentMailRecoveryRequest request, CancellationToken ct) => SendAsync<MailRecoveryResultDto>(HttpMethod.Post, "recoveries/mail", request, ct);

    public Task<MailIndexResultDto> IndexMailAsync(AgentMailIndexRequest request, CancellationToken ct) => SendAsync<MailIndexResultDto>(HttpMethod.Post, "mail-index", request, ct);

    /// <summary>Waits for the teardown of a recovery that answered before it (AnswerBeforeTeardown).</summary>
    public Task<AgentTeardownDto> WaitForRecoveryTeardownAsync(string id, CancellationToken ct) =>
        SendAsync<AgentTeardownDto>(HttpMethod.Post, $"recoveries/{Uri.EscapeDataString(id)}/teardown", null, ct);

    public Task<System.Text.Json.JsonElement> CancelRecoveryAsync(string id, CancellationToken ct) =>
        SendAsync<System.Text.Json.JsonElement>(HttpMethod.Post, $"recoveries/{Uri.EscapeDataString(id)}/cancel", null, ct);

    private async Task<T> SendAsync<T>(HttpMethod method, string path, object? body, CancellationToken ct)
    {
        try
        {
            using var request = new HttpRequestMessage(method, PathPrefix + path);
            if (body is not null)
            {
                request.Content = JsonContent.Create(body, options: ApiJson.Options);
            }

            using var response = await _http.SendAsync(request, ct);
            await EnsureSuccessAsync(response, ct);
            return await response.Content.ReadFromJsonAsync<T>(ApiJson.Options, ct)
                ?? throw new StorageException(StorageError.Unavailable, $"agent {_host.Name} sent an empty answer");
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
        {
            throw new StorageException(StorageError.Unavailable, $"agent {_host.Name} at {_host.Address} did not answer ({ex.Message}); check that 'tidemark agent run' runs there and paired with this server ('tidemark agent pair' with this server's fingerprint)", ex);
        }
        catch (System.Text.Json.JsonException ex)
        {
            throw new StorageException(StorageError.Unavailable, $"agent {_host.Name} answered something that is not an agent's answer ({ex.Message})", ex);
        }
    }

    /// <summary>
    /// An agent that refuses (4xx) has looked at the request and said why: its code (a storage
    /// error's, e.g. busy or not-found) and message reach the caller and the job, as invalid-argument
    /// when the code is not one of ours. A 5xx, no answer, or a refusal of the link itself (401/403:
    /// this server is not paired with it) means the agent is unavailable for this server.
    /// </summary>
    private async Task EnsureSuccessAsync(HttpResponseMessage response, CancellationToken ct)
    {
        if ((int)response.StatusCode is not (>= 400 and < 500) or 401 or 403)
        {
            await PartnerLink.EnsureSuccessAsync(response, $"agent {_host.Name}", ct);
            return;
        }

        var problem = await PartnerLink.TryReadProblemAsync(response, ct);
        var error = Enum.GetValues<StorageError>().FirstOrDefault(e => ErrorCodes.For(e) == problem?.Code, StorageError.InvalidArgument);
        throw new StorageException(error, $"agent {_host.Name} refused: {problem?.Detail ?? $"{(int)response.StatusCode} {response.ReasonPhrase}"}");
    }

    public void Dispose() => _http.Dispose();
}
