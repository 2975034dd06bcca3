using Microsoft.Playwright;
using Tidemark.Api;

namespace Tidemark.Console.Tests;

/// <summary>
/// One real `tidemark serve` (free ports, its own data directory) and one headless Chromium
/// (<see cref="ConsoleBrowser"/>, shared with the interop tests) for a test class.
/// </summary>
public sealed class ConsoleFixture : IAsyncLifetime
{
    private readonly TempDirectory _directory = new();
    private ServerProcess? _server;
    private ConsoleBrowser? _browser;

    internal ServerProcess Server => _server!;

    public IBrowser Browser => _browser!.Browser;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(_directory.Path);
        _browser = await ConsoleBrowser.StartAsync();
    }

    public async Task DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }

        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        _directory.Dispose();
    }

    public TidemarkClient Admin() => Server.Client();

    /// <summary>A new named token with <paramref name="role"/>; returns its secret.</summary>
    public async Task<string> TokenAsync(string name, string role)
    {
        using var admin = Admin();
        return (await admin.CreateTokenAsync(new CreateTokenRequest(name, role))).Secret;
    }

    /// <summary>A fresh browser context (own cookies) signed in with <paramref name="secret"/> to <paramref name="server"/> (default: this fixture's), on the dashboard.</summary>
    public Task<IPage> SignInAsync(string secret, Uri? server = null) => _browser!.SignInAsync(server ?? Server.Http, secret);
}
