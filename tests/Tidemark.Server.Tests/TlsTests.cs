using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>The API over TLS: a self-signed certificate pinned through server.json, or an administrator's CA-signed one.</summary>
public sealed class TlsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public async Task SelfSigned_IsPinnedByDataDirectory_TrustedByCaCert_AndPlainHttpGetsNothing()
    {
        var data = _temp.Combine("data");
        string fingerprint;
        await using (var server = await ServerProcess.StartAsync(data, "--tls-cert", "self-signed"))
        {
            using var client = server.Client();
            await client.CreateVolumeAsync(new CreateVolumeRequest("secure", 16 << 20));
            var pinned = await CliProcess.RunAsync("volume", "list", "--data", data);
            var https = server.Http.ToString();
            var untrusted = await CliProcess.RunAsync("volume", "list", "--server", https, "--token", server.Token);
            var withCa = await CliProcess.RunAsync("volume", "list", "--server", https, "--token", server.Token, "--ca-cert", Path.Combine(data, "tls", "cert.pem"));
            using var plain = new HttpClient { BaseAddress = new Uri(https.Replace("https://", "http://", StringComparison.Ordinal)) };
            var plainError = await Record.ExceptionAsync(() => plain.GetAsync("api/v1/volumes"));

            Assert.Equal("https", server.Http.Scheme);
            Assert.Contains("secure", pinned.AssertSuccess().StandardOutput, StringComparison.Ordinal);
            Assert.Equal(3, untrusted.ExitCode);
            Assert.Contains("--ca-cert", untrusted.StandardError, StringComparison.Ordinal);
            Assert.Contains("secure", withCa.AssertSuccess().StandardOutput, StringComparison.Ordinal);
            Assert.IsType<HttpRequestException>(plainError);
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(Path.Combine(data, "tls", "key.pem")));
            fingerprint = server.TlsFingerprint!;
        }

        await using var again = await ServerProcess.StartAsync(data);
        Assert.Equal(fingerprint, again.TlsFingerprint); // the config file keeps TLS on, with the same certificate
    }

    [Fact]
    public async Task CaSignedCertificate_IsTrustedThroughItsCa()
    {
        var dir = _temp.Path;
        await Openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", $"{dir}/ca.key", "-out", $"{dir}/ca.pem", "-days", "2", "-subj", "/CN=Test CA");
        await Openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", $"{dir}/server.key", "-out", $"{dir}/server.csr", "-subj", "/CN=tidemark-test");
        await File.WriteAllTextAsync($"{dir}/ext.cnf", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n");
        await Openssl("x509", "-req", "-in", $"{dir}/server.csr", "-CA", $"{dir}/ca.pem", "-CAkey", $"{dir}/ca.key", "-CAcreateserial", "-out", $"{dir}/server.pem", "-days", "2", "-extfile", $"{dir}/ext.cnf");

        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"), "--tls-cert", $"{dir}/server.pem", "--tls-key", $"{dir}/server.key");
        var trusted = await CliProcess.RunAsync("pool", "info", "--server", server.Http.ToString(), "--token", server.Token, "--ca-cert", $"{dir}/ca.pem");
        var wrongCa = await CliProcess.RunAsync("pool", "info", "--server", server.Http.ToString(), "--token", server.Token, "--ca-cert", $"{dir}/server.csr");

        trusted.AssertSuccess();
        Assert.Equal(2, wrongCa.ExitCode);
        Assert.Contains("cannot read the CA certificate", wrongCa.StandardError, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nbd_StartTls_WithTheServersCertificate_AndTlsRequiredExportsRefusePlainClients()
    {
        var data = _temp.Combine("data");
        await using var server = await ServerProcess.StartAsync(data, "--tls-cert", "self-signed");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("secure", 16 << 20));
        var required = await client.CreateExportAsync(new CreateExportRequest("secure", "secure", "nbd", TlsRequired: true));
        var open = await client.CreateExportAsync(new CreateExportRequest("secure", "open", "nbd", ReadOnly: true));
        var certificates = _temp.Combine("certs");
        Directory.CreateDirectory(certificates);
        File.Copy(Path.Combine(data, "tls", "cert.pem"), Path.Combine(certificates, "ca-cert.pem"));

        var overTls = await ProcessRunner.RunAsync("nbdinfo", $"{required.Url}?tls-certificates={certificates}");
        var plain = await ProcessRunner.RunAsync("nbdinfo", required.Url!.Replace("nbds://", "nbd://", StringComparison.Ordinal));
        var openPlain = await ProcessRunner.RunAsync("nbdinfo", open.Url!);
        var openTls = await ProcessRunner.RunAsync("nbdinfo", $"{open.Url!.Replace("nbd://", "nbds://", StringComparison.Ordinal)}?tls-certificates={certificates}");

        Assert.StartsWith("nbds://", required.Url, StringComparison.Ordinal);
        Assert.True(required.TlsRequired);
        Assert.Contains("with TLS", overTls.AssertSuccess().StandardOutput, StringComparison.Ordinal);
        Assert.NotEqual(0, plain.ExitCode);
        Assert.Contains("without TLS", openPlain.AssertSuccess().StandardOutput, StringComparison.Ordinal);
        Assert.Contains("with TLS", openTls.AssertSuccess().StandardOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Nbd_OverTls_ABurstOfLargeWrites_IsAllAnswered_AndReadsBackIdentically()
    {
        // Many 4 MiB WRITEs in flight at once on one TLS connection: they go to the connection's write
        // worker, which sends their replies through the TLS pipe (a flush that need not complete at
        // once). Every write must be answered (no deadlock between the worker and the connection
        // thread) and the data must be what was sent.
        var data = _temp.Combine("data");
        await using var server = await ServerProcess.StartAsync(data, "--tls-cert", "self-signed");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("burst", 64 << 20));
        var export = await client.CreateExportAsync(new CreateExportRequest("burst", "burst", "nbd", TlsRequired: true));
        var certificates = _temp.Combine("certs");
        Directory.CreateDirectory(certificates);
        File.Copy(Path.Combine(data, "tls", "cert.pem"), Path.Combine(certificates, "ca-cert.pem"));
        var url = $"{export.Url}?tls-certificates={certificates}";
        var source = _temp.Combine("source.img");
        var content = new byte[48 << 20];
        new Random(18).NextBytes(content);
        await File.WriteAllBytesAsync(source, content);
        var back = _temp.Combine("back.img");

        var write = await ProcessRunner.RunAsync("nbdcopy", "--connections=1", $"--request-size={4 << 20}", "--requests=16", "--flush", source, url);
        var read = await ProcessRunner.RunAsync("nbdcopy", "--connections=1", url, back);

        write.AssertSuccess();
        read.AssertSuccess();
        var readBack = await File.ReadAllBytesAsync(back);
        Assert.Equal(64 << 20, readBack.Length);
        Assert.True(content.AsSpan().SequenceEqual(readBack.AsSpan(0, content.Length)), "the data read back differs from what was written");
    }

    [Fact]
    public async Task TlsRequiredExport_OnAServerWithoutTls_IsRefused()
    {
        await using var server = await ServerProcess.StartAsync(_temp.Combine("data"));
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("v", 16 << 20));

        var error = await Assert.ThrowsAsync<TidemarkApiException>(() => client.CreateExportAsync(new CreateExportRequest("v", "v", "nbd", TlsRequired: true)));

        Assert.Contains("--tls-cert", error.Message, StringComparison.Ordinal);
        Assert.Empty(await client.ListExportsAsync());
    }

    [Fact]
    public async Task MissingCertificateFile_IsRefusedAtStart()
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() =>
            ServerProcess.StartAsync(_temp.Combine("data"), "--tls-cert", _temp.Combine("missing.pem"), "--tls-key", _temp.Combine("missing.key")));

        Assert.Contains("does not exist", error.Message, StringComparison.Ordinal);
    }

    private static async Task Openssl(params string[] arguments) =>
        (await ProcessRunner.RunAsync("openssl", arguments)).AssertSuccess();
}
