using System.Globalization;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// A protocol gets its connection's addresses and a way to end it from <see cref="ConnectionInfo"/>,
/// never the socket (issue 18 §1; docs/adr/0010-protocol-transport.md).
/// </summary>
public sealed class ConnectionInfoTests
{
    [Fact]
    public async Task Open_GetsTheAddresses_AndAbortEndsAReceiveBlockedInTheDataPhase()
    {
        await using var listener = new EchoListener();
        using var client = await ConnectInDataPhaseAsync(listener);

        var info = await listener.Opened.Task.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(client.LocalEndPoint, info.RemoteEndPoint);
        Assert.Equal(listener.LocalEndpoint, info.LocalEndPoint);

        // The connection is in its data phase, blocked in a receive on its own thread: Abort ends it.
        info.Abort();
        await listener.Ended.Task.WaitAsync(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task DataPhase_TheSocketGetsAFixedFourMiBReceiveBuffer()
    {
        await using var listener = new EchoListener();
        using var client = await ConnectInDataPhaseAsync(listener);
        await listener.Opened.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // ss(8) shows the server side's skmem rb: SO_RCVBUF as the kernel set it (doubled, capped at rmem_max).
        var port = ((IPEndPoint)listener.LocalEndpoint!).Port;
        var rmemMax = int.Parse(File.ReadAllText("/proc/sys/net/core/rmem_max").Trim(), CultureInfo.InvariantCulture);
        var ss = (await ProcessRunner.RunAsync("ss", "-tmnH", "state", "established", "(", "sport", "=", $":{port}", ")")).AssertSuccess().StandardOutput;
        var rb = Regex.Match(ss, @"rb(\d+)");
        Assert.True(rb.Success, $"ss printed no rb for port {port}: {ss}");
        Assert.Equal(2L * Math.Min(ProtocolListener.DataPhaseReceiveBufferBytes, rmemMax), long.Parse(rb.Groups[1].Value, CultureInfo.InvariantCulture));
    }

    /// <summary>Echoes what it receives, in its data phase from the first byte.</summary>
    /// <summary>Starts the listener, connects, and waits for "hello" to come back: the connection is then in its data phase.</summary>
    private static async Task<Socket> ConnectInDataPhaseAsync(EchoListener listener)
    {
        await listener.StartAsync(CancellationToken.None);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await client.ConnectAsync(listener.LocalEndpoint!);
            await client.SendAsync("hello"u8.ToArray());
            var echo = new byte[5];
            for (var received = 0; received < echo.Length;)
            {
                var n = await client.ReceiveAsync(echo.AsMemory(received));
                Assert.True(n > 0, "the listener closed before echoing");
                received += n;
            }

            Assert.Equal("hello"u8.ToArray(), echo);
            return client;
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    private sealed class EchoListener() : ProtocolListener(new IPEndPoint(IPAddress.Loopback, 0), null, "echo", "--echo", NullLogger.Instance)
    {
        public TaskCompletionSource<ConnectionInfo> Opened { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public TaskCompletionSource Ended { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        protected override (Func<CancellationToken, Task> Run, Action? Abort) Open(IDuplexPipe transport, IPayloadFeature payload, ConnectionInfo info, IConnectionPhase phase) =>
            (async stopping =>
            {
                await phase.EnterDataPhaseAsync();
                Opened.SetResult(info);
                try
                {
                    while (true)
                    {
                        var result = await transport.Input.ReadAsync(stopping);
                        foreach (var segment in result.Buffer)
                        {
                            await transport.Output.WriteAsync(segment, stopping);
                        }

                        transport.Input.AdvanceTo(result.Buffer.End);
                        if (result.IsCompleted || result.IsCanceled)
                        {
                            return;
                        }
                    }
                }
                catch (IOException)
                {
                    // The aborted socket may report a reset instead of an end.
                }
                finally
                {
                    Ended.SetResult();
                }
            },
            null);
    }
}
