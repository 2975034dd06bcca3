using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// The accept loop survives running out of file descriptors (issue 17: it died without a log line
/// and /metrics kept reporting the exports online): it logs, backs off, reports itself down in
/// /metrics, and serves again by itself once descriptors are free.
/// </summary>
public sealed class AcceptLoopTests
{
    [Fact]
    public async Task OutOfDescriptors_TheListenerLogsBacksOffAndRecovers()
    {
        using var temp = new TempDirectory();
        await using var server = await ServerProcess.StartAsync(temp.Combine("data"), "--handshake-timeout", "60s");
        using var client = server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        var nbd = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        var open = Directory.GetFiles($"/proc/{server.Pid}/fd").Length;
        Limit(server.Pid, open + 40);

        var held = new List<Socket>();
        try
        {
            for (var i = 0; i < 100; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Parse("127.0.0.2"), 0));
                held.Add(socket);
                await socket.ConnectAsync(IPEndPoint.Parse(server.Nbd)); // the kernel completes it; the server cannot accept them all
            }

            await WaitAsync(() => server.Log.Contains("NBD cannot accept connections", StringComparison.Ordinal), server);
        }
        finally
        {
            foreach (var socket in held)
            {
                socket.Dispose();
            }

            Limit(server.Pid, 20000);
        }

        await WaitAsync(() => server.Log.Contains("NBD accepts connections on", StringComparison.Ordinal), server);
        using var http = new HttpClient { BaseAddress = server.Http };
        http.DefaultRequestHeaders.Authorization = new("Bearer", server.Token);
        var metrics = PrometheusExposition.Parse(await http.GetStringAsync("metrics")).Samples
            .Where(s => s.Key.StartsWith("tidemark_listener_", StringComparison.Ordinal))
            .ToDictionary();
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", "write -P 7 0 64k", "-c", "read -P 7 0 64k", nbd.Url!)).AssertSuccess();

        Assert.True(metrics["tidemark_listener_accept_failures_total{protocol=\"nbd\"}"] > 0, string.Join('\n', metrics));
        Assert.Equal(1, metrics["tidemark_listener_up{protocol=\"nbd\"}"]);
    }

    private static void Limit(int pid, int descriptors) =>
        ProcessRunner.RunAsync("prlimit", "--pid", pid.ToString(CultureInfo.InvariantCulture), $"--nofile={descriptors}:20000").GetAwaiter().GetResult().AssertSuccess();

    private static async Task WaitAsync(Func<bool> condition, ServerProcess server)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"the server never logged what was expected:\n{server.Log}");
            await Task.Delay(100);
        }
    }
}
