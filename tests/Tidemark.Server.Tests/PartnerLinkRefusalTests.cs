using System.Net;
using System.Text;
using Tidemark.Replication;

namespace Tidemark.Server.Tests;

/// <summary>What a partner's answer means to a sync (unit: no server): a 4xx is its decision, typed as such; a 5xx a broken link.</summary>
public sealed class PartnerLinkRefusalTests
{
    [Fact]
    public async Task EnsureSuccess_A4xxAnswer_IsAPartnerRefusal_AndNotRetried()
    {
        using var response = Answer(HttpStatusCode.Forbidden, "not json");

        var refused = await Assert.ThrowsAsync<PartnerRefusedException>(() => PartnerLink.EnsureSuccessAsync(response, "the partner refused the stream", CancellationToken.None));

        Assert.Equal("the partner refused the stream: Forbidden", refused.Message);
        Assert.Equal(StorageError.Unavailable, refused.Error);
        Assert.True(SyncFailure.IsRefusal(refused));
    }

    [Fact]
    public async Task EnsureSuccess_A5xxAnswer_IsABrokenLink_RetriedLater()
    {
        using var response = Answer(HttpStatusCode.ServiceUnavailable, "not json");

        var failed = await Assert.ThrowsAsync<StorageException>(() => PartnerLink.EnsureSuccessAsync(response, "the partner did not list its snapshots", CancellationToken.None));

        Assert.Equal(StorageError.Unavailable, failed.Error);
        Assert.False(SyncFailure.IsRefusal(failed));
    }

    private static HttpResponseMessage Answer(HttpStatusCode status, string body) =>
        new(status) { Content = new StringContent(body, Encoding.UTF8, "application/problem+json"), ReasonPhrase = status.ToString() };
}
