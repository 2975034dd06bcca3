using System.Net;
using Microsoft.Extensions.Logging.Abstractions;

namespace Tidemark.Server.Tests;

/// <summary>The connection-limit settings (docs/adr/0006-connection-limits.md) and the caps they set.</summary>
public sealed class ConnectionLimitsSettingsTests
{
    [Fact]
    public void Defaults_TenSecondHandshake_NoIdleLimit_AndTheDocumentedCaps()
    {
        var limits = new ServerSettings().ToConnectionLimits();

        Assert.Equal(TimeSpan.FromSeconds(10), limits.HandshakeTimeout);
        Assert.Equal(TimeSpan.Zero, limits.IdleTimeout);
        Assert.Equal(4096, limits.MaxConnections);
        Assert.Equal(256, limits.MaxConnectionsPerSource);
        Assert.Equal(TimeSpan.FromSeconds(60), limits.SendTimeout);
    }

    [Theory]
    [InlineData("5s", 5)]
    [InlineData("off", 0)]
    [InlineData("0", 0)]
    public void SendTimeout_IsParsed_OffIsZero(string text, int seconds)
    {
        var limits = (new ServerSettings() with { SendTimeout = text }).ToConnectionLimits();

        Assert.Equal(TimeSpan.FromSeconds(seconds), limits.SendTimeout);
    }

    [Theory]
    [InlineData("10ms")]
    [InlineData("2d")]
    [InlineData("soon")]
    public void SendTimeout_OutOfRange_ThrowsNamingTheSetting(string text)
    {
        var error = Assert.Throws<ArgumentException>((new ServerSettings() with { SendTimeout = text }).Validate);

        Assert.StartsWith("send-timeout", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Values_AreParsed()
    {
        var limits = (new ServerSettings() with { HandshakeTimeout = "2s", IdleTimeout = "8h", MaxConnections = 10, MaxConnectionsPerSource = 3 }).ToConnectionLimits();

        Assert.Equal((TimeSpan.FromSeconds(2), TimeSpan.FromHours(8), 10, 3), (limits.HandshakeTimeout, limits.IdleTimeout, limits.MaxConnections, limits.MaxConnectionsPerSource));
    }

    [Theory]
    [InlineData("0s", "off", 1, 1, "handshake-timeout")]
    [InlineData("2h", "off", 1, 1, "handshake-timeout")]
    [InlineData("ten", "off", 1, 1, "handshake-timeout")]
    [InlineData("10s", "10ms", 1, 1, "idle-timeout")]
    [InlineData("10s", "off", 0, 1, "max-connections")]
    [InlineData("10s", "off", 1, -5, "max-connections-per-source")]
    public void Validate_OutOfRange_ThrowsNamingTheSetting(string handshake, string idle, int max, int perSource, string setting)
    {
        var settings = new ServerSettings() with { HandshakeTimeout = handshake, IdleTimeout = idle, MaxConnections = max, MaxConnectionsPerSource = perSource };

        var error = Assert.Throws<ArgumentException>(settings.Validate);

        Assert.StartsWith(setting, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Admission_CapsInTotalAndPerSource_AndReleasesSlots()
    {
        var admission = new ConnectionAdmission(new ConnectionLimits { MaxConnections = 3, MaxConnectionsPerSource = 2 }, "NBD", NullLogger.Instance);
        var a = IPAddress.Parse("192.0.2.1");
        var b = IPAddress.Parse("::ffff:192.0.2.2");

        bool[] admitted = [admission.TryAdmit(a), admission.TryAdmit(a), admission.TryAdmit(a), admission.TryAdmit(ConnectionAdmission.SourceOf(new IPEndPoint(b, 1))), admission.TryAdmit(null)];
        admission.Release(a, stillNegotiating: true);
        var afterRelease = admission.TryAdmit(null);

        Assert.Equal([true, true, false, true, false], admitted);
        Assert.True(afterRelease);
        Assert.Equal((1, 1), (admission.RefusedSourceCap, admission.RefusedTotalCap));
        Assert.Equal(IPAddress.Parse("192.0.2.2"), ConnectionAdmission.SourceOf(new IPEndPoint(b, 1)));
    }
}
