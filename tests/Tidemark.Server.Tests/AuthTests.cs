using System.Net;
using System.Net.Http.Json;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Who may call the API of a real server: anonymous floods are summarized and cannot push real
/// history out, the replication gate ignores letter case the way the router does, and named tokens
/// carry roles that the server enforces per endpoint.
/// </summary>
public sealed class AuthTests : ServerTest
{
    [Fact]
    public async Task AnonymousFlood_IsSummarized_AndRealEventsStay()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var eventsFile = Path.Combine(Server.DataDirectory, "events.jsonl");
        var before = new FileInfo(eventsFile).Length;
        using var anonymous = new HttpClient { BaseAddress = Server.Http };
        var longName = new string('x', 6 << 10);

        // Replication paths (which the old gate answered, and logged, before checking any token) and a wrong token.
        var answers = await Task.WhenAll(Enumerable.Range(0, 200).Select(async i =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, i % 2 == 0 ? $"replication/v1/volumes/{longName}{i}/receive" : "api/v1/volumes");
            if (i % 4 == 1)
            {
                request.Headers.Authorization = new("Bearer", "wrong-" + i);
            }

            using var response = await anonymous.SendAsync(request);
            return response.StatusCode;
        }));

        var events = await client.ListEventsAsync(limit: 1000);
        Assert.All(answers, s => Assert.Equal(HttpStatusCode.Unauthorized, s));
        Assert.Contains(events, e => e.Kind == "volume.create" && e.Subject == "mail");
        var failed = events.Where(e => e.Kind == "auth.failed").ToList();
        Assert.Single(failed);
        Assert.Equal("127.0.0.1", failed[0].Remote);
        Assert.Equal("refused", failed[0].Log); // noise: kept apart, it cannot rotate real history out of events.jsonl
        Assert.DoesNotContain(events, e => e.Kind != "auth.failed" && e.Actor == "anonymous");
        Assert.True(new FileInfo(eventsFile).Length - before < 4096, $"the log grew by {new FileInfo(eventsFile).Length - before} bytes");
        Assert.Contains("Refused 1 API request(s) without a valid token from 127.0.0.1", Server.Log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ReplicationPaths_InAnyLetterCase_AreNotServedOnTheApiPort()
    {
        using var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);

        using var hello = await http.GetAsync("Replication/v1/hello");
        using var upper = await http.GetAsync("REPLICATION/V1/hello");
        using var receive = await http.PostAsync("Replication/v1/volumes/x/receive", new ByteArrayContent([1, 2, 3]));
        using var anonymous = new HttpClient { BaseAddress = Server.Http };
        using var anonymousHello = await anonymous.GetAsync("Replication/v1/hello");
        using var client = Server.Client();
        var incoming = await client.ListIncomingAsync();

        Assert.Equal(HttpStatusCode.NotFound, hello.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, upper.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, receive.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymousHello.StatusCode);
        Assert.Empty(incoming);
    }

    [Fact]
    public async Task HugeName_IsNotEchoedWhole_InProblemOrEvent()
    {
        using var http = new HttpClient { BaseAddress = Server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Server.Token);
        var name = new string('n', 900 << 10);

        using var response = await http.PostAsJsonAsync("api/v1/volumes", new CreateVolumeRequest(name, 1 << 20), ApiJson.Options);
        var body = await response.Content.ReadAsStringAsync();
        using var client = Server.Client();
        var events = await client.ListEventsAsync(kind: "volume.create");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.True(body.Length < 4096, $"the problem document has {body.Length} characters");
        Assert.Contains("more", body, StringComparison.Ordinal);
        var failed = Assert.Single(events);
        Assert.True(failed.Message.Length <= 2048, $"the event message has {failed.Message.Length} characters");
    }

    [Fact]
    public async Task NamedTokens_RolesAreEnforced_AndTheActorIsTheName()
    {
        using var admin = Server.Client();
        await admin.CreateVolumeAsync(new CreateVolumeRequest("db", 16 << 20));
        await admin.CreateSnapshotAsync("db", "s1");
        await admin.HoldSnapshotAsync("db@s1", new HoldRequest(Reason: "audit"));
        var created = await CliProcess.RunAsync("token", "create", "bob", "--role", "operator", "--json", "--data", Server.DataDirectory);
        var bobToken = System.Text.Json.JsonSerializer.Deserialize<CreatedTokenDto>(created.AssertSuccess().StandardOutput, ApiJson.Options)!;
        var carol = await admin.CreateTokenAsync(new CreateTokenRequest("carol", TokenRoles.Auditor));
        using var bob = Server.Client(bobToken.Secret);
        using var auditor = Server.Client(carol.Secret);

        await bob.CreateVolumeAsync(new CreateVolumeRequest("web", 16 << 20));
        var deleteVolume = await Assert.ThrowsAsync<TidemarkApiException>(() => bob.DeleteVolumeAsync("db"));
        var release = await Assert.ThrowsAsync<TidemarkApiException>(() => bob.ReleaseHoldAsync("db@s1"));
        var partner = await Assert.ThrowsAsync<TidemarkApiException>(() => bob.AddPartnerAsync(new AddPartnerRequest("dr", "127.0.0.1:1", new string('a', 64))));
        var volumes = await auditor.ListVolumesAsync();
        var auditorCreate = await Assert.ThrowsAsync<TidemarkApiException>(() => auditor.CreateVolumeAsync(new CreateVolumeRequest("x", 16 << 20)));
        var events = await admin.ListEventsAsync(kind: "volume.create");
        var list = (await CliProcess.RunAsync("token", "list", "--data", Server.DataDirectory)).AssertSuccess().StandardOutput;
        (await CliProcess.RunAsync("token", "revoke", "bob", "--data", Server.DataDirectory)).AssertSuccess();
        var revoked = await Assert.ThrowsAsync<TidemarkApiException>(() => bob.ListVolumesAsync());
        var lastAdmin = await Assert.ThrowsAsync<TidemarkApiException>(() => admin.RevokeTokenAsync(TokenStore.FirstTokenName));

        Assert.Equal(HttpStatusCode.Forbidden, deleteVolume.Status);
        Assert.Equal(ErrorCodes.Forbidden, deleteVolume.Code);
        Assert.Contains("needs role admin", deleteVolume.Message, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, release.Status);
        Assert.Equal(HttpStatusCode.Forbidden, partner.Status);
        Assert.Equal(2, volumes.Count);
        Assert.Equal(HttpStatusCode.Forbidden, auditorCreate.Status);
        Assert.Contains("has role auditor", auditorCreate.Message, StringComparison.Ordinal);
        Assert.Equal(["admin", "bob", "carol"], events.Select(e => e.Actor));
        Assert.Equal(["ok", "ok", "failed"], events.Select(e => e.Outcome));
        Assert.Contains("carol", list, StringComparison.Ordinal);
        Assert.Contains("auditor", list, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Unauthorized, revoked.Status);
        Assert.Equal(HttpStatusCode.Conflict, lastAdmin.Status);
        Assert.Equal(0, await Server.StopAsync());
        var stored = string.Join('\n', StoredState.Read(Server.DataDirectory, pool => pool.Control.List(TokenStore.Kind)).Select(e => e.Value.ToString()));
        Assert.DoesNotContain(carol.Secret, stored, StringComparison.Ordinal);
        Assert.DoesNotContain(Server.Token, stored, StringComparison.Ordinal);
        Assert.Contains("carol", stored, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TokenCreate_BadNameOrRole_IsRefusedClearly()
    {
        using var admin = Server.Client();

        var name = await Assert.ThrowsAsync<TidemarkApiException>(() => admin.CreateTokenAsync(new CreateTokenRequest("no spaces", TokenRoles.Operator)));
        var role = await Assert.ThrowsAsync<TidemarkApiException>(() => admin.CreateTokenAsync(new CreateTokenRequest("dave", "root")));
        var cli = await CliProcess.RunAsync("token", "create", "dave", "--role", "root", "--data", Server.DataDirectory);

        Assert.Equal(HttpStatusCode.BadRequest, name.Status);
        Assert.Equal(HttpStatusCode.BadRequest, role.Status);
        Assert.Contains("admin, operator, auditor", role.Message, StringComparison.Ordinal);
        Assert.NotEqual(0, cli.ExitCode);
        Assert.Contains("root", cli.StandardError, StringComparison.Ordinal);
    }
}
