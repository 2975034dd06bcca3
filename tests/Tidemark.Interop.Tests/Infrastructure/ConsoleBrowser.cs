using Microsoft.Playwright;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// Headless Debian chromium driven by Playwright, signed in to a server's web console: the console's
/// own browser tests (Tidemark.Console.Tests) do the same against a bare server, while the tests here
/// need this project's agent and mail fixtures behind the page. Screenshots go to the test output
/// directory (bin/, never git).
/// </summary>
internal sealed class ConsoleBrowser : IAsyncDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private readonly IPlaywright _playwright;

    private ConsoleBrowser(IPlaywright playwright, IBrowser browser)
    {
        _playwright = playwright;
        Browser = browser;
    }

    public IBrowser Browser { get; }

    public static string ScreenshotDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "console-screenshots");

    public static async Task<ConsoleBrowser> StartAsync()
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"{ChromiumPath} is missing: run scripts/install-deps (it installs Debian's chromium)");
        }

        // No browser download is possible here: Playwright drives the Debian one by its path.
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");

        // Expectations wait for recovery jobs (a view attached and mounted on the agent's host, the
        // store read, the view taken down): seconds when the machine is busy, not Playwright's 5 s.
        Assertions.SetDefaultExpectTimeout(120_000);
        Directory.CreateDirectory(ScreenshotDirectory);
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new()
            {
                ExecutablePath = ChromiumPath,
                Headless = true,
                Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
            });
            return new ConsoleBrowser(playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    /// <summary>A fresh context (own cookies) signed in to <paramref name="server"/> with <paramref name="secret"/>, on the dashboard.</summary>
    public async Task<IPage> SignInAsync(Uri server, string secret)
    {
        var context = await Browser.NewContextAsync(new() { BaseURL = server.ToString().TrimEnd('/'), ViewportSize = new() { Width = 1280, Height = 900 } });

        context.SetDefaultTimeout(120_000);
        var page = await context.NewPageAsync();
        await page.GotoAsync("/");
        await page.GetByLabel("API token").FillAsync(secret);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await page.GetByRole(AriaRole.Heading, new() { Name = "Dashboard" }).WaitForAsync();
        return page;
    }

    public static Task ScreenshotAsync(IPage page, string name) =>
        page.ScreenshotAsync(new() { Path = Path.Combine(ScreenshotDirectory, name + ".png"), FullPage = true });

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        _playwright.Dispose();
    }
}
