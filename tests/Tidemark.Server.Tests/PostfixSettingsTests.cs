using Tidemark.Agent;

namespace Tidemark.Server.Tests;

/// <summary>
/// Whether main.cf sets defer_transports itself, read from the file the hold already has in hand
/// instead of a `postconf -n` process per snapshot: release removes a setting the hold added, and
/// puts back one that was there, so a wrong answer would change the user's main.cf.
/// </summary>
public sealed class PostfixSettingsTests
{
    [Theory]
    [InlineData("defer_transports = smtp\n", true)]
    [InlineData("myhostname = a\ndefer_transports=\n", true)]
    [InlineData("defer_transports \t = lmtp, virtual\n", true)]
    [InlineData("myhostname = a\n", false)]
    [InlineData("#defer_transports = smtp\n", false)]
    [InlineData("  defer_transports = smtp\n", false)]
    [InlineData("relay_transport = relay\n    defer_transports = smtp\n", false)]
    [InlineData("defer_transports_extra = smtp\n", false)]
    [InlineData("default_transport = smtp # defer_transports = smtp\n", false)]
    public void SetsDeferTransports_ParameterLineAtFirstColumnOnly(string mainCf, bool expected) =>
        Assert.Equal(expected, PostfixSettings.SetsDeferTransports(mainCf));
}
