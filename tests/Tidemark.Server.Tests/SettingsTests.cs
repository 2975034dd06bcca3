using Tidemark.Api;
using Tidemark.Server.Api;

namespace Tidemark.Server.Tests;

public sealed class SettingsTests
{
    [Theory]
    [InlineData(StorageError.InvalidArgument, "invalid-argument", 400)]
    [InlineData(StorageError.NotFound, "not-found", 404)]
    [InlineData(StorageError.AlreadyExists, "already-exists", 409)]
    [InlineData(StorageError.HasDependents, "has-dependents", 409)]
    [InlineData(StorageError.NoSpace, "no-space", 507)]
    [InlineData(StorageError.IoError, "io-error", 500)]
    public void ErrorCodes_StorageError_KebabCaseCodeAndStatus(StorageError error, string code, int status)
    {
        Assert.Equal(code, ErrorCodes.For(error));
        Assert.Equal(status, Problems.StatusFor(error));
    }

    [Theory]
    [InlineData("127.0.0.1:8410", "127.0.0.1", 8410)]
    [InlineData("[::1]:0", "::1", 0)]
    public void ParseEndpoint_ValidAddress_Parses(string text, string address, int port)
    {
        var endpoint = ServerSettings.ParseEndpoint(text, "http");

        Assert.Equal((address, port), (endpoint.Address.ToString(), endpoint.Port));
    }

    [Theory]
    [InlineData("localhost:8410")]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:99999")]
    public void Validate_BadHttpAddress_ThrowsNamingTheSetting(string http)
    {
        var error = Assert.Throws<ArgumentException>(() => (new ServerSettings() with { Http = http }).Validate());

        Assert.Contains("http", error.Message, StringComparison.Ordinal);
        Assert.Contains("IP:PORT", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_BadSizeOrLogLevel_Throws()
    {
        Assert.Throws<ArgumentException>(() => (new ServerSettings() with { MapCache = "lots" }).Validate());
        Assert.Throws<ArgumentException>(() => (new ServerSettings() with { LogLevel = "chatty" }).Validate());
        (new ServerSettings() with { Nbd = "off", StoreCapacity = "auto" }).Validate();
    }

    [Theory]
    [InlineData("50us", 50)]
    [InlineData("1ms", 1000)]
    [InlineData("off", 0)]
    [InlineData("0", 0)]
    public void ReceivePollDuration_ValidText_Parses(string text, int microseconds)
    {
        var settings = new ServerSettings() with { ReceivePoll = text };

        settings.Validate();
        Assert.Equal(TimeSpan.FromMicroseconds(microseconds), settings.ReceivePollDuration);
    }

    [Theory]
    [InlineData("fast")]
    [InlineData("1s")]
    [InlineData("-5us")]
    public void Validate_BadReceivePoll_ThrowsNamingTheSetting(string text)
    {
        var error = Assert.Throws<ArgumentException>(() => (new ServerSettings() with { ReceivePoll = text }).Validate());

        Assert.Contains("receive-poll", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_NbdSocketPathTooLong_ThrowsNamingTheSetting()
    {
        var error = Assert.Throws<ArgumentException>(() => (new ServerSettings() with { NbdSocket = "/tmp/" + new string('s', 120) }).Validate());

        Assert.Contains("nbd-socket", error.Message, StringComparison.Ordinal);
        Assert.True((new ServerSettings() with { NbdSocket = "off" }).NbdSocketDisabled);
        Assert.True(new ServerSettings().NbdSocketDisabled);
    }

    [Fact]
    public void Validate_IscsiSetting_AcceptsAddressOrOffAndNamesTheSetting()
    {
        var error = Assert.Throws<ArgumentException>(() => (new ServerSettings() with { Iscsi = "portal" }).Validate());

        Assert.Contains("iscsi", error.Message, StringComparison.Ordinal);
        Assert.Equal(ServerSettings.DefaultIscsi, new ServerSettings().Iscsi);
        Assert.True((new ServerSettings() with { Iscsi = "off" }).IscsiDisabled);
        (new ServerSettings() with { Iscsi = "0.0.0.0:3260" }).Validate();
    }

    [Theory]
    [InlineData("db", "iqn.2026-11.dev.tidemark:db")]
    [InlineData("Mail_Store", "iqn.2026-11.dev.tidemark:mail-store")]
    [InlineData("db@monday", "iqn.2026-11.dev.tidemark:db-monday")]
    public void DefaultIqn_ExportName_ValidLowerCaseIqn(string exportName, string iqn)
    {
        Assert.Equal(iqn, ExportRegistry.DefaultIqn(exportName));
        Assert.True(Tidemark.Protocols.Iscsi.IscsiName.IsValid(iqn));
    }

    [Fact]
    public void ResolveSettings_FlagsOverrideFile_FileKeepsItsValues()
    {
        var directory = Directory.CreateTempSubdirectory("tidemark-settings-").FullName;
        try
        {
            var data = new DataDirectory(directory);
            new ServerSettings { Http = "127.0.0.1:9000", MapCache = "8M" }.Save(data.ConfigPath);

            var settings = TidemarkServer.ResolveSettings(new ServeOptions { DataDirectory = directory, MapCache = "16M" }, data);

            Assert.Equal(("127.0.0.1:9000", "16M"), (settings.Http, settings.MapCache));
            Assert.Equal("8M", ServerSettings.Load(data.ConfigPath).MapCache);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
