using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// An LMTP server (RFC 2033) of the test's own on a free loopback port, for Postfix's lmtp agent to
/// deliver to: it answers every command, takes the message after DATA, and holds the reply to the
/// first message's end until <see cref="Finish"/> is called, so that a delivery stays in flight for
/// as long as the test wants. Counts the messages it answered 250 for.
/// </summary>
internal sealed class SlowLmtpServer : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Task _accepting;
    private int _delivered;

    private SlowLmtpServer()
    {
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = AcceptAsync();
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>Completes when the first message's data has arrived (its reply is held).</summary>
    public TaskCompletionSource FirstDataReceived { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int Delivered => Volatile.Read(ref _delivered);

    public static SlowLmtpServer Start() => new();

    /// <summary>Lets the held reply (and every later one) go.</summary>
    public void Finish() => _gate.TrySetResult();

    public async ValueTask DisposeAsync()
    {
        _gate.TrySetResult();
        await _stop.CancelAsync();
        _listener.Stop();
        try
        {
            await _accepting;
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }

        _stop.Dispose();
    }

    private async Task AcceptAsync()
    {
        var sessions = new List<Task>();
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                sessions.Add(ServeAsync(client));
            }
        }
        finally
        {
            await Task.WhenAll(sessions.Select(s => s.ContinueWith(_ => { }, TaskScheduler.Default)));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        using var _ = client;
        try
        {
            using var stream = client.GetStream();
            using var reader = new StreamReader(stream, Encoding.ASCII);
            await using var writer = new StreamWriter(stream, Encoding.ASCII) { NewLine = "\r\n", AutoFlush = true };
            await writer.WriteLineAsync("220 slow.example.test LMTP");
            while (await reader.ReadLineAsync(_stop.Token) is { } line)
            {
                var verb = line.Split(' ')[0].ToUpperInvariant();
                if (verb == "QUIT")
                {
                    await writer.WriteLineAsync("221 bye");
                    return;
                }

                if (verb != "DATA")
                {
                    await writer.WriteLineAsync(verb is "LHLO" or "MAIL" or "RCPT" or "RSET" or "NOOP" ? "250 ok" : "500 unknown");
                    continue;
                }

                await writer.WriteLineAsync("354 go ahead");
                while (await reader.ReadLineAsync(_stop.Token) is { } data && data != ".")
                {
                }

                FirstDataReceived.TrySetResult();
                await _gate.Task.WaitAsync(_stop.Token);
                Interlocked.Increment(ref _delivered);
                await writer.WriteLineAsync("250 2.0.0 delivered");
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // The client went, or the server stops.
        }
    }
}
