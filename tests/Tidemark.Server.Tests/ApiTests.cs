using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The REST API of a real `tidemark serve` process, through the typed client and raw HTTP.</summary>
public sealed class ApiTests : ServerTest
{

    [Theory]
    [InlineData(null)]
    [InlineData("Bearer not-the-token")]
    [InlineData("Basic dXNlcjpwYXNz")]
    public async Task AnyRequest_WithoutValidToken_Returns401Problem(string? authorization)
    {
        using var http = new HttpClient { BaseAddress = Server.Http };
        using var request = new HttpRequestMessage(HttpMethod.Get, "api/v1/volumes");
        if (authorization is not null)
        {
            request.Headers.TryAddWithoutValidation("Authorization", authorization);
        }

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await ReadProblemAsync(response);
        Assert.Equal("unauthorized", problem.Code);
        Assert.Contains("token", problem.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OpenApiDocument_WithoutToken_Returns401()
    {
        using var http = new HttpClient { BaseAddress = Server.Http };

        using var response = await http.GetAsync("openapi/v1.json");

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
    }

    [Fact]
    public async Task OpenApiDocument_WithToken_DescribesEveryResource()
    {
        using var http = Authorized();

        var document = await http.GetStringAsync("openapi/v1.json");

        using var json = JsonDocument.Parse(document);
        var paths = json.RootElement.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        foreach (var expected in new[] { "/api/v1/pool", "/api/v1/volumes", "/api/v1/volumes/{name}/diff", "/api/v1/volumes/{volume}/snapshots", "/api/v1/views", "/api/v1/groups", "/api/v1/exports" })
        {
            Assert.Contains(expected, paths);
        }
    }

    [Theory]
    [InlineData("""{"name":"bad name","sizeBytes":1048576}""", HttpStatusCode.BadRequest, "invalid-name")]
    [InlineData("""{"name":"v","sizeBytes":1000}""", HttpStatusCode.BadRequest, "misaligned")]
    [InlineData("""{"name":"v","sizeBytes":1048576,"logicalBlockSizeBytes":1024}""", HttpStatusCode.BadRequest, "invalid-argument")]
    [InlineData("""{"name":"v","sizeBytes":""", HttpStatusCode.BadRequest, "bad-request")]
    [InlineData("""{"sizeBytes":1048576}""", HttpStatusCode.BadRequest, "bad-request")]
    [InlineData("""{"name":"v","sizeBytes":"ten"}""", HttpStatusCode.BadRequest, "bad-request")]
    public async Task CreateVolume_BadInput_ReturnsProblemAndChangesNothing(string body, HttpStatusCode status, string code)
    {
        using var http = Authorized();
        using var content = new StringContent(body, Encoding.UTF8, "application/json");

        using var response = await http.PostAsync("api/v1/volumes", content);

        Assert.Equal(status, response.StatusCode);
        var problem = await ReadProblemAsync(response);
        Assert.Equal(code, problem.Code);
        Assert.False(string.IsNullOrWhiteSpace(problem.Detail));
        Assert.Empty(await Client.ListVolumesAsync());
    }

    [Fact]
    public async Task StorageErrors_ThroughTypedClient_MapToStatusAndStableCode()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));

        var duplicate = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20)));
        var missing = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.GetVolumeAsync("nope"));
        var missingSnapshot = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.GetSnapshotAsync("db@nope"));
        var shrink = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.ResizeVolumeAsync("db", 1 << 20));
        var badLimit = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DiffAsync("db", "nope", limit: 0));

        Assert.Equal((HttpStatusCode.Conflict, "already-exists"), (duplicate.Status, duplicate.Code));
        Assert.Equal((HttpStatusCode.NotFound, "not-found"), (missing.Status, missing.Code));
        Assert.Contains("volume list", missing.Message, StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.NotFound, "not-found"), (missingSnapshot.Status, missingSnapshot.Code));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid-argument"), (shrink.Status, shrink.Code));
        Assert.Equal((HttpStatusCode.BadRequest, "invalid-argument"), (badLimit.Status, badLimit.Code));
        Assert.Equal(16 << 20, (await Client.GetVolumeAsync("db")).SizeBytes);
    }

    [Fact]
    public async Task UnknownRoute_WithToken_Returns404Problem()
    {
        using var http = Authorized();

        using var response = await http.GetAsync("api/v1/nothing-here");

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Equal("not-found", (await ReadProblemAsync(response)).Code);
    }

    [Fact]
    public async Task VolumeLifecycle_CreateResizeSnapshotHoldDelete_FollowsEngineRules()
    {
        var created = await Client.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20, 4096));
        var resized = await Client.ResizeVolumeAsync("mail", 128 << 20);
        var snapshot = await Client.CreateSnapshotAsync("mail", "monday");
        var held = await Client.HoldSnapshotAsync("mail@monday", new HoldRequest(Reason: "audit"));
        var deleteHeld = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteSnapshotAsync("mail@monday"));
        var released = await Client.ReleaseHoldAsync("mail@monday");
        var usage = await Client.GetSnapshotUsageAsync("mail@monday");
        await Client.DeleteSnapshotAsync("mail@monday");

        Assert.Equal(("volume", 4096, 64L << 20), (created.Kind, created.LogicalBlockSizeBytes, created.SizeBytes));
        Assert.Equal(128L << 20, resized.SizeBytes);
        Assert.Equal(("mail@monday", 128L << 20), (snapshot.Address, snapshot.SizeBytes));
        Assert.True(held.Held);
        Assert.Equal("audit", held.HoldReason);
        Assert.Equal((HttpStatusCode.Conflict, "held"), (deleteHeld.Status, deleteHeld.Code));
        Assert.False(released.Held);
        Assert.Equal(0, usage.UniqueBytes);
        Assert.Empty(await Client.ListSnapshotsAsync("mail"));
    }

    [Fact]
    public async Task HoldSnapshot_Dated_IsHeldAndCannotBeReleasedEarly()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("legal", 8 << 20));
        await Client.CreateSnapshotAsync("legal", "case-1");
        var until = DateTimeOffset.UtcNow.AddYears(1);

        var held = await Client.HoldSnapshotAsync("legal@case-1", new HoldRequest(until, "litigation"));
        var released = await Client.ReleaseHoldAsync("legal@case-1");
        var delete = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteSnapshotAsync("legal@case-1"));

        Assert.Equal((true, false), (held.Held, held.HeldUntilReleased));
        Assert.True(released.Held);
        Assert.Equal("held", delete.Code);
        Assert.Contains("litigation", delete.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Groups_CreateSnapshotDelete_SnapshotsEveryMember()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("data", 8 << 20));
        await Client.CreateVolumeAsync(new CreateVolumeRequest("log", 8 << 20));

        var group = await Client.CreateGroupAsync(new CreateGroupRequest("app", ["data", "log"]));
        var snapshots = await Client.SnapshotGroupAsync("app", "nightly");
        var listed = await Client.ListGroupsAsync();
        await Client.DeleteGroupAsync("app");

        Assert.Equal(["data", "log"], group.Volumes);
        Assert.Equal(["data@nightly", "log@nightly"], snapshots.Select(s => s.Address).Order(StringComparer.Ordinal));
        Assert.Single(listed);
        Assert.Empty(await Client.ListGroupsAsync());
        Assert.Single(await Client.ListSnapshotsAsync("log"));
    }

    [Fact]
    public async Task DeleteVolume_WhileExported_Returns409UntilExportRemoved()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("busy", 8 << 20));
        await Client.CreateExportAsync(new CreateExportRequest("busy"));

        var refused = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteVolumeAsync("busy"));
        await Client.DeleteExportAsync("busy");
        await Client.DeleteVolumeAsync("busy");

        Assert.Equal((HttpStatusCode.Conflict, "busy"), (refused.Status, refused.Code));
        Assert.Contains("export remove busy", refused.Message, StringComparison.Ordinal);
        Assert.Empty(await Client.ListVolumesAsync());
    }

    [Fact]
    public async Task CreateExport_BadTargets_ReturnProblems()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("v", 8 << 20));
        await Client.CreateExportAsync(new CreateExportRequest("v"));

        var missing = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.CreateExportAsync(new CreateExportRequest("ghost")));
        var duplicate = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.CreateExportAsync(new CreateExportRequest("v")));
        var protocol = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.CreateExportAsync(new CreateExportRequest("v", "v2", "smb")));
        var unknown = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.DeleteExportAsync("ghost"));

        Assert.Equal("not-found", missing.Code);
        Assert.Equal("already-exists", duplicate.Code);
        Assert.Equal("unsupported", protocol.Code);
        Assert.Equal(HttpStatusCode.NotFound, unknown.Status);
        Assert.Single(await Client.ListExportsAsync());
    }

    [Fact]
    public async Task Verify_FreshPool_IsClean()
    {
        await Client.CreateVolumeAsync(new CreateVolumeRequest("v", 8 << 20));

        var report = await Client.VerifyAsync();
        var pool = await Client.GetPoolAsync();

        Assert.True(report.Clean, string.Join("; ", report.Problems));
        Assert.Equal(1L << 30, Assert.Single(pool.Stores).CapacityBytes);
        Assert.InRange(pool.CapacityBytes, (1L << 30) - (64 << 10), 1L << 30);
        Assert.Equal(1, pool.Volumes);
    }

    [Fact]
    public async Task AddStore_NewFile_GrowsPoolCapacity()
    {
        var before = await Client.GetPoolAsync();

        var after = await Client.AddStoreAsync(new AddStoreRequest(Temp.Combine("store-1.dat"), 256 << 20));
        var again = await Assert.ThrowsAsync<TidemarkApiException>(() => Client.AddStoreAsync(new AddStoreRequest(Temp.Combine("store-1.dat"), 256 << 20)));

        Assert.Equal(2, after.Stores.Count);
        Assert.True(after.CapacityBytes > before.CapacityBytes + (255 << 20));
        Assert.Equal("already-exists", again.Code);
    }

    private static async Task<ProblemDto> ReadProblemAsync(HttpResponseMessage response) =>
        JsonSerializer.Deserialize<ProblemDto>(await response.Content.ReadAsStringAsync(), ApiJson.Options)!;

    private HttpClient Authorized()
    {
        var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Server.Token);
        return http;
    }
}
