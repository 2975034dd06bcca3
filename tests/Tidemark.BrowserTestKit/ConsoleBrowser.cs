using Microsoft.Playwright;

namespace Tidemark.TestKit;

/// <summary>
/// Headless Debian chromium (scripts/install-deps) driven by Playwright, for signing in to a
/// server's web console. Playwright cannot download its own browser here, so it is started by its
/// path without a sandbox (the tests run as root in a container). Screenshots go to the test output
/// directory (bin/, never git).
/// </summary>
public sealed class ConsoleBrowser : IAsyncDisposable
{
    public const string ChromiumPath = "/usr/bin/chromium";

    private static readonly TimeSpan DefaultPatience = TimeSpan.FromSeconds(15);

    private readonly IPlaywright _playwright;
    private readonly TimeSpan _patience;

    private ConsoleBrowser(IPlaywright playwright, IBrowser browser, TimeSpan patience)
    {
        _playwright = playwright;
        Browser = browser;
        _patience = patience;
    }

    public IBrowser Browser { get; }

    public static string ScreenshotDirectory { get; } = Path.Combine(AppContext.BaseDirectory, "console-screenshots");

    /// <param name="patience">
    /// how long a page action waits (default 15 s). A longer one also becomes the default of
    /// Playwright's expectations: pages that wait for real jobs (a view mounted on an agent's host)
    /// take longer than Playwright's 5 s on a busy machine.
    /// </param>
    public static async Task<ConsoleBrowser> StartAsync(TimeSpan? patience = null)
    {
        if (!File.Exists(ChromiumPath))
        {
            throw new InvalidOperationException($"{ChromiumPath} is missing: run scripts/install-deps (it installs Debian's chromium)");
        }

        // No browser download is possible here: Playwright drives the Debian one by its path.
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        if (patience is { } longer)
        {
            Assertions.SetDefaultExpectTimeout((float)longer.TotalMilliseconds);
        }

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
            return new ConsoleBrowser(playwright, browser, patience ?? DefaultPatience);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    /// <summary>A fresh context (own cookies) signed in to <paramref name="server"/> with <paramref name="secret"/>, on the dashboard.</summary>
    /// <param name="acceptAnyCertificate">for a server with a self-signed certificate, which the browser cannot pin as the CLI does</param>
    public async Task<IPage> SignInAsync(Uri server, string secret, bool acceptAnyCertificate = false)
    {
        var context = await Browser.NewContextAsync(new()
        {
            BaseURL = server.ToString().TrimEnd('/'),
            ViewportSize = new() { Width = 1280, Height = 900 },
            IgnoreHTTPSErrors = acceptAnyCertificate,
        });
        context.SetDefaultTimeout((float)_patience.TotalMilliseconds);
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
