using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tidemark.Server.Metrics;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// A web host with only the server's metrics export (<see cref="MetricsExport"/>) on a free loopback
/// port: instruments created on meters of <see cref="Scope"/> are scraped through the real exporter,
/// without a pool or a whole server.
/// </summary>
internal sealed class MetricsHost : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly HttpClient _http;

    private MetricsHost(WebApplication app, MetricsScope scope, Uri address)
    {
        _app = app;
        Scope = scope;
        _http = new HttpClient { BaseAddress = address };
    }

    public MetricsScope Scope { get; }

    public static async Task<MetricsHost> StartAsync()
    {
        var scope = new MetricsScope();
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        builder.Services.AddTidemarkMetrics(scope);
        var app = builder.Build();
        app.MapMetrics();
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new MetricsHost(app, scope, new Uri(address));
    }

    public async Task<(string Text, string? ContentType)> ScrapeRawAsync()
    {
        using var response = await _http.GetAsync("metrics");
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadAsStringAsync(), response.Content.Headers.ContentType?.MediaType);
    }

    public async Task<PrometheusExposition> ScrapeAsync() => PrometheusExposition.Parse((await ScrapeRawAsync()).Text);

    public async ValueTask DisposeAsync()
    {
        _http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
