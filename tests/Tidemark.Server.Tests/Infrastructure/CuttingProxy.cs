using System.Net;
using System.Net.Sockets;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// A TCP relay on 127.0.0.1 that cuts its first connections after a number of bytes towards the
/// target; while <see cref="CutEveryConnection"/> is set, every new connection is cut after
/// <see cref="CutAfterBytes"/> (0: the link is down).
/// </summary>
internal sealed class CuttingProxy : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly IPEndPoint _target;
    private long _cutAfter;
    private readonly CancellationTokenSource _stop = new();
    private int _cutsLeft;
    private int _cutsMade;

    public CuttingProxy(IPEndPoint target, long cutAfterBytes, int cuts)
    {
        _target = target;
        _cutAfter = cutAfterBytes;
        _cutsLeft = cuts;
        _listener.Start();
        _ = AcceptAsync();
    }

    public string Address => ((IPEndPoint)_listener.LocalEndpoint).ToString();

    public int CutsMade => Volatile.Read(ref _cutsMade);

    /// <summary>Bytes relayed towards the target: what crossed the "link" (a sender also counts what was still in its socket buffers at a cut).</summary>
    public long BytesForwarded => Interlocked.Read(ref _forwarded);

    private long _forwarded;

    public bool CutEveryConnection { get; set; }

    /// <summary>While set, each cut connection carries a random number of bytes in this range instead of <see cref="CutAfterBytes"/> (seeded: runs repeat).</summary>
    public (long Min, long Max)? CutBetween { get; set; }

    private readonly Random _random = new(16);

    private long NextBudget()
    {
        if (CutBetween is not { } range)
        {
            return CutAfterBytes;
        }

        lock (_random)
        {
            return _random.NextInt64(range.Min, range.Max + 1);
        }
    }

    public long CutAfterBytes
    {
        get => Interlocked.Read(ref _cutAfter);
        set => Interlocked.Exchange(ref _cutAfter, value);
    }

    private async Task AcceptAsync()
    {
        try
        {
            while (true)
            {
                var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                _ = RelayAsync(client);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }
    }

    private async Task RelayAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            try
            {
                await server.ConnectAsync(_target, _stop.Token);
                var cut = CutEveryConnection || Interlocked.Decrement(ref _cutsLeft) >= 0;
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                var up = PumpAsync(client.GetStream(), server.GetStream(), cut ? NextBudget() : long.MaxValue, n => Interlocked.Add(ref _forwarded, n), linked.Token);
                var down = PumpAsync(server.GetStream(), client.GetStream(), long.MaxValue, null, linked.Token);
                await Task.WhenAny(up, down);
                if (cut && up.IsCompleted)
                {
                    Interlocked.Increment(ref _cutsMade);

                    // The target gets what was relayed, then an end (not a reset that would drop
                    // what its socket had not yet read): a cut link, not a lossy one.
                    server.Client.Shutdown(SocketShutdown.Send);
                }

                await linked.CancelAsync();
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
            {
                // The relay ends with either side.
            }
        }
    }

    private static async Task PumpAsync(NetworkStream from, NetworkStream to, long budget, Action<int>? forwarded, CancellationToken ct)
    {
        var buffer = new byte[64 * 1024];
        long moved = 0;
        try
        {
            while (moved < budget)
            {
                var n = await from.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, budget - moved)), ct);
                if (n == 0)
                {
                    return;
                }

                await to.WriteAsync(buffer.AsMemory(0, n), ct);
                forwarded?.Invoke(n);
                moved += n;
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
        {
            // Either side went away.
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _listener.Dispose();
        _stop.Dispose();
    }
}
