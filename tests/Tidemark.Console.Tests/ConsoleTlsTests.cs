using Microsoft.Playwright;
using Tidemark.Server.Tests.Infrastructure;

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
        await using var browser = await ConsoleBrowser.StartAsync();

        // The self-signed certificate is pinned by fingerprint by the CLI; the browser is simply told to accept it.
        var page = await browser.SignInAsync(server.Http, server.Token, acceptAnyCertificate: true);
        var cookie = Assert.Single(await page.Context.CookiesAsync());
        Assert.True(cookie.Secure);
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
    }
}
