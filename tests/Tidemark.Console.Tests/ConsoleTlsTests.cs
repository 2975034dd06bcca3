using Microsoft.Playwright;
using Tidemark.Server.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace Tidemark.Console.Tests;

/// <summary>Under TLS (the API's own certificate) the session cookie is also Secure.</summary>
public sealed class ConsoleTlsTests
{
    [Fact]
    public async Task Under_tls_the_session_cookie_is_secure()
    {
        using var directory = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(directory.Path, "--tls-cert", "self-signed");
        Assert.Equal("https", server.Http.Scheme);
        Environment.SetEnvironmentVariable("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1");
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new() { ExecutablePath = ConsoleFixture.ChromiumPath, Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
        // The self-signed certificate is pinned by fingerprint by the CLI; the browser is simply told to accept it.
        var context = await browser.NewContextAsync(new() { BaseURL = server.Http.ToString().TrimEnd('/'), IgnoreHTTPSErrors = true });
        var page = await context.NewPageAsync();
        await page.GotoAsync("/");
        await page.GetByLabel("API token").FillAsync(server.Token);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Dashboard" })).ToBeVisibleAsync();
        var cookie = Assert.Single(await context.CookiesAsync());
        Assert.True(cookie.Secure);
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
    }
}
