using System.Net;
using System.Net.Sockets;
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

    /// <summary>
    /// A problem document as a server sends it (media type with a charset parameter), over a real
    /// loopback HTTP exchange: the refusal carries the partner's own explanation, not the status.
    /// </summary>
    [Theory]
    [InlineData("application/problem+json; charset=utf-8")]
    [InlineData("application/problem+json")]
    [InlineData("application/json; charset=utf-8")]
    public async Task EnsureSuccess_AProblemDocument_GivesThePartnersDetail(string contentType)
    {
        const string Detail = "mail was promoted to a primary at this site; it no longer accepts replication (café)";
        var body = Encoding.UTF8.GetBytes($$"""{"type":"https://tidemark.dev/problems/read-only","title":"Read-only","status":409,"detail":"{{Detail}}","code":"read-only"}""");
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var answering = AnswerOnceAsync(listener, $"HTTP/1.1 409 Conflict\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n", body);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/") };

        using var response = await http.GetAsync("replication/v1/volumes/mail/snapshots");
        var problem = await PartnerLink.TryReadProblemAsync(response, CancellationToken.None);
        var refused = await Assert.ThrowsAsync<PartnerRefusedException>(() => PartnerLink.EnsureSuccessAsync(response, "the partner refused the stream", CancellationToken.None));
        await answering;

        Assert.Equal(("read-only", 409), (problem?.Code, problem?.Status));
        Assert.Equal($"the partner refused the stream: {Detail}", refused.Message);
    }

    [Theory]
    [InlineData("text/html; charset=utf-8", 100)]
    [InlineData("application/problem+json; charset=utf-8", PartnerLink.MaxProblemBytes + 1)]
    public async Task EnsureSuccess_AnAnswerThatIsNoProblemDocument_FallsBackToTheStatus(string contentType, int size)
    {
        // A proxy's HTML page, or a "problem" too large to be one: neither is read as the partner's word.
        var body = Encoding.UTF8.GetBytes($$"""{"detail":"{{new string('x', size)}}"}""");
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var answering = AnswerOnceAsync(listener, $"HTTP/1.1 502 Bad Gateway\r\nContent-Type: {contentType}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n", body);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{((IPEndPoint)listener.LocalEndpoint).Port}/") };

        using var response = await http.GetAsync("replication/v1/volumes/mail/snapshots", HttpCompletionOption.ResponseHeadersRead);
        var failed = await Assert.ThrowsAsync<StorageException>(() => PartnerLink.EnsureSuccessAsync(response, "the partner did not list its snapshots", CancellationToken.None));
        await answering;

        Assert.Equal("the partner did not list its snapshots: Bad Gateway", failed.Message);
        Assert.False(SyncFailure.IsRefusal(failed));
    }

    private static async Task AnswerOnceAsync(TcpListener listener, string head, byte[] body)
    {
        using var client = await listener.AcceptTcpClientAsync();
        await using var stream = client.GetStream();
        var request = new byte[8192];
        var read = 0;
        while (!Encoding.ASCII.GetString(request, 0, read).Contains("\r\n\r\n", StringComparison.Ordinal))
        {
            var n = await stream.ReadAsync(request.AsMemory(read));
            if (n == 0)
            {
                return;
            }

            read += n;
        }

        await stream.WriteAsync(Encoding.ASCII.GetBytes(head));
        await stream.WriteAsync(body);
    }

    private static HttpResponseMessage Answer(HttpStatusCode status, string body) =>
        new(status) { Content = new StringContent(body, Encoding.UTF8, "application/problem+json"), ReasonPhrase = status.ToString() };
}
