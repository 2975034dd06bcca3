using System.Net;
using System.Net.Http.Json;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Every refusal of a real server's API is an RFC 9457 problem document, the size and media-type ones included.</summary>
public sealed class ApiLimitTests : ServerTest
{
    private HttpClient _http = null!;

    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        _http = new HttpClient { BaseAddress = Server.Http };
        _http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);
    }

    public override async Task DisposeAsync()
    {
        _http.Dispose();
        await base.DisposeAsync();
    }

    [Fact]
    public async Task WrongContentType_Is415Problem()
    {
        using var body = new StringContent("{\"name\":\"mail\",\"sizeBytes\":1048576}", Encoding.UTF8, "text/plain");

        using var response = await _http.PostAsync("api/v1/volumes", body);

        var problem = await AssertProblemAsync(response, HttpStatusCode.UnsupportedMediaType);
        Assert.Contains("application/json", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongMethod_Is405Problem_WithAllow()
    {
        using var response = await _http.PutAsync("api/v1/volumes", JsonContent.Create(new { }));

        await AssertProblemAsync(response, HttpStatusCode.MethodNotAllowed);
        Assert.Contains("POST", response.Content.Headers.Allow);
    }

    [Fact]
    public async Task LongPath_Is414Problem()
    {
        using var response = await _http.GetAsync("api/v1/volumes/" + new string('v', 20_000));

        await AssertProblemAsync(response, HttpStatusCode.RequestUriTooLong);
    }

    [Fact]
    public async Task LargeJsonBody_Is413Problem()
    {
        using var response = await _http.PostAsJsonAsync("api/v1/volumes", new CreateVolumeRequest(new string('n', 2 << 20), 1 << 20), ApiJson.Options);

        await AssertProblemAsync(response, HttpStatusCode.RequestEntityTooLarge);
    }

    [Fact]
    public async Task LongHoldReason_Is400Problem_AndNothingIsHeld()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        await client.CreateSnapshotAsync("mail", "a");

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => client.HoldSnapshotAsync("mail@a", new HoldRequest(Reason: new string('r', 10_000))));
        var snapshot = await client.GetSnapshotAsync("mail@a");

        Assert.Equal(HttpStatusCode.BadRequest, refused.Status);
        Assert.Contains("at most 256", refused.Message, StringComparison.Ordinal);
        Assert.False(snapshot.Held);
    }

    private static async Task<ProblemDto> AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<ProblemDto>(ApiJson.Options);
        Assert.Equal((int)status, problem!.Status);
        return problem;
    }
}
