using System.Net;
using System.Net.Security;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>Two real servers pair by fingerprint and talk over mutual TLS; anyone else is refused.</summary>
public sealed class PartnerTests : IAsyncLifetime
{
    private TwoServers _sites = null!;

    private ServerProcess Primary => _sites.Primary;

    private ServerProcess Dr => _sites.Dr;

    public async Task InitializeAsync() => _sites = await TwoServers.StartAsync();

    public async Task DisposeAsync() => await _sites.DisposeAsync();

    [Fact]
    public async Task PairedBothWays_TestSucceeds_OneWayOrUnpairedIsRefused()
    {
        using var primary = Primary.Client();
        using var dr = Dr.Client();
        var primaryId = await primary.GetIdentityAsync();
        var drId = await dr.GetIdentityAsync();

        await primary.AddPartnerAsync(new AddPartnerRequest("dr", drId.ReplicationAddress!, drId.Fingerprint));
        var oneWay = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.TestPartnerAsync("dr"));
        var added = (await CliProcess.RunAsync("partner", "add", "primary", primaryId.ReplicationAddress!, "--fingerprint", primaryId.Fingerprint, "--data", Dr.DataDirectory)).AssertSuccess();
        var hello = await primary.TestPartnerAsync("dr");
        var back = await dr.TestPartnerAsync("primary");
        await dr.RemovePartnerAsync("primary");
        var afterUnpair = await Assert.ThrowsAsync<TidemarkApiException>(() => primary.TestPartnerAsync("dr"));
        var events = await dr.ListEventsAsync(kind: "partner");

        Assert.Equal(HttpStatusCode.BadGateway, oneWay.Status);
        Assert.Contains("paired with this server too", oneWay.Message, StringComparison.Ordinal);
        Assert.Contains("primary", added.StandardOutput, StringComparison.Ordinal);
        Assert.Equal(drId.Fingerprint, hello.Fingerprint);
        Assert.Equal(drId.PoolId, hello.PoolId);
        Assert.Equal(primaryId.Fingerprint, back.Fingerprint);
        Assert.Equal("unavailable", afterUnpair.Code);
        Assert.Equal(["partner.add", "partner.test", "partner.remove"], events.Select(e => e.Kind));
    }

    [Fact]
    public async Task ReplicationListener_RefusesClientsWithoutAPartnerCertificate_AndServesNothingElse()
    {
        using var dr = Dr.Client();
        var drId = await dr.GetIdentityAsync();
        using var handler = new SocketsHttpHandler { SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, certificate, _, _) => certificate is not null && Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(certificate.GetRawCertData())) == drId.Fingerprint } };
        using var anonymous = new HttpClient(handler) { BaseAddress = new Uri($"https://{drId.ReplicationAddress}/") };
        using var api = new HttpClient { BaseAddress = Dr.Http };
        api.DefaultRequestHeaders.Authorization = new("Bearer", Dr.Token);

        var noCertificate = await Record.ExceptionAsync(() => anonymous.GetAsync("replication/v1/hello"));
        using var overApi = await api.GetAsync("replication/v1/hello");

        Assert.IsType<HttpRequestException>(noCertificate);
        Assert.Equal(HttpStatusCode.NotFound, overApi.StatusCode);
    }

    [Theory]
    [InlineData("bad name", "127.0.0.1:1", "0000000000000000000000000000000000000000000000000000000000000001", "invalid-name")]
    [InlineData("x", "not-an-address", "0000000000000000000000000000000000000000000000000000000000000001", "invalid-argument")]
    [InlineData("x", "127.0.0.1:1", "abc", "invalid-argument")]
    public async Task AddPartner_BadInput_IsRefusedAndNothingChanges(string name, string address, string fingerprint, string code)
    {
        using var client = Primary.Client();

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.AddPartnerAsync(new AddPartnerRequest(name, address, fingerprint)));
        var own = await Assert.ThrowsAsync<TidemarkApiException>(async () =>
            await client.AddPartnerAsync(new AddPartnerRequest("me", "127.0.0.1:1", (await client.GetIdentityAsync()).Fingerprint)));

        Assert.Equal(code, error.Code);
        Assert.Contains("own", own.Message, StringComparison.Ordinal);
        Assert.Empty(await client.ListPartnersAsync());
    }
}
