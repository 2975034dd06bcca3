namespace Tidemark.Api;

public sealed partial class TidemarkClient
{
    /// <summary>
    /// Runs a mail recovery as a job on a recovery host's agent (docs/adr/0012), following it to its
    /// end: the result lists what matched and what happened to each message.
    /// </summary>
    public async Task<MailRecoveryResultDto> RecoverMailAsync(MailRecoveryJobRequest request, Action<JobDto>? progress = null, CancellationToken ct = default) =>
        await RunJobAsync<MailRecoveryResultDto>(HttpMethod.Post, "recoveries/mail", progress, ct, request)
            ?? throw new TidemarkApiException(System.Net.HttpStatusCode.InternalServerError, ErrorCodes.Internal, "the mail recovery job ended without a result");
}
