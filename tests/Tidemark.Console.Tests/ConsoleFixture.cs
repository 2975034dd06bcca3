using Microsoft.Playwright;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Console.Tests;

/// <summary>
/// One real `tidemark serve` (free ports, its own data directory) and one headless Chromium for a
/// test class. The browser is Debian's chromium (scripts/install-deps): Playwright cannot download
/// its own here. Screenshots go to the test output directory (bin/, never git).
/// </summary>
public sealed class ConsoleFixture : IAsyncLifetime
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private readonly TempDirectory _directory = new();
    private ServerProcess? _server;
    private IPlaywright? _playwright;

    internal ServerProcess Server => _server!;

    public IBrowser Browser { get; private set; } = null!;

    public static string ScreenshotDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "console-screenshots");

    public async Task InitializeAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"{ChromiumPath} is missing: run scripts/install-deps (it installs Debian's chromium)");
        }

        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        Directory.CreateDirectory(ScreenshotDirectory);
        _server = await ServerProcess.StartAsync(_directory.Path);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumPath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }

        _playwright?.Dispose();
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
    public async Task<IPage> SignInAsync(string secret, Uri? server = null)
    {
        var context = await Browser.NewContextAsync(new() { BaseURL = (server ?? Server.Http).ToString().TrimEnd('/'), ViewportSize = new() { Width = 1280, Height = 900 } });
        context.SetDefaultTimeout(15_000);
        var page = await context.NewPageAsync();
        await page.GotoAsync("/");
        await page.GetByLabel("API token").FillAsync(secret);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await page.GetByRole(AriaRole.Heading, new() { Name = "Dashboard" }).WaitForAsync();
        return page;
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new() { Path = Path.Combine(ScreenshotDirectory, name + ".png"), FullPage = true });
}
