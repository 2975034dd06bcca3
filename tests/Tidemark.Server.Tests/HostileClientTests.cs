using System.Net;
using System.Net.Sockets;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Garbage connections flood the NBD and iSCSI listeners of a real server while real clients keep
/// writing and reading verified data; afterwards the server still serves and the pool verifies.
/// TIDEMARK_LONG=1 floods for a minute instead of a few seconds.
/// </summary>
public sealed class HostileClientTests : ServerTest
{
    [Fact]
    public async Task GarbageFlood_DoesNotDisturbRealClients()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 64 << 20));
        var nbd = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        var iscsi = await client.CreateExportAsync(new CreateExportRequest("mail", "mail-iscsi", "iscsi"));
        var seconds = Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 60 : 6;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(seconds));
        var floods = new List<Task<int>>();
        for (var i = 0; i < 8; i++)
        {
            floods.Add(FloodAsync(IPEndPoint.Parse(Server.Nbd), seed: i, nbdMagic: true, stop.Token));
            floods.Add(FloodAsync(IPEndPoint.Parse(Server.Iscsi), seed: 100 + i, nbdMagic: false, stop.Token));
        }

        var rounds = 0;
        var atZero = 0;
        while (!stop.IsCancellationRequested)
        {
            var pattern = 0x10 + (rounds % 200);
            var offset = (rounds % 32) << 20;
            atZero = offset == 0 ? pattern : atZero;
            (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -P {pattern} {offset} 1M", "-c", $"read -P {pattern} {offset} 1M", nbd.Url!)).AssertSuccess();
            (await ProcessRunner.RunAsync("iscsi-inq", iscsi.Luns![0].Url!)).AssertSuccess();
            rounds++;
        }

        await Task.WhenAll(floods);
        var garbage = floods.Sum(t => t.Result);
        var after = await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"read -P {atZero} 0 1M", nbd.Url!);
        var report = await client.VerifyAsync();

        Assert.True(rounds >= 2, $"only {rounds} client rounds ran");
        Assert.True(garbage > 100, $"only {garbage} garbage connections were made");
        after.AssertSuccess();
        Assert.True(report.Clean, string.Join("; ", report.Problems));
    }

    /// <summary>Connections that send random bytes, a valid magic then garbage, a stalled half header, or nothing. Returns how many were made.</summary>
    private static async Task<int> FloodAsync(IPEndPoint target, int seed, bool nbdMagic, CancellationToken stop)
    {
        var random = new Random(seed);
        var made = 0;
        while (!stop.IsCancellationRequested)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await socket.ConnectAsync(target, stop);
                made++;
                var kind = random.Next(4);
                var bytes = new byte[random.Next(8, 4096)];
                random.NextBytes(bytes);
                if (kind == 1)
                {
                    // Something that starts like the protocol and then goes wrong.
                    var start = nbdMagic ? "IHAVEOPT"u8.ToArray() : [0x43, 0x87, 0, 0, 0, 0, 0, 0x40];
                    start.CopyTo(bytes, 0);
                }

                if (kind != 3)
                {
                    await socket.SendAsync(bytes.AsMemory(0, kind == 2 ? Math.Min(bytes.Length, 20) : bytes.Length), stop);
                }

                if (kind == 2)
                {
                    await Task.Delay(random.Next(10, 200), stop); // stall mid-header
                }

                using var receive = CancellationTokenSource.CreateLinkedTokenSource(stop);
                receive.CancelAfter(50);
                await socket.ReceiveAsync(new byte[512], receive.Token);
            }
            catch (Exception ex) when (ex is SocketException or OperationCanceledException or IOException)
            {
                // The server closing a garbage connection is the expected outcome.
            }
        }

        return made;
    }
}
