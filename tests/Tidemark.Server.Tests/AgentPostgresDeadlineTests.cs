using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Tidemark.Agent;

namespace Tidemark.Server.Tests;

/// <summary>
/// pg_backup_start waits for a checkpoint, which under load outlived Npgsql's default 30 s command
/// timeout while the server's quiesce call allowed 60 s: the snapshot was skipped with "Exception
/// while reading from stream". The plugin's commands now run without Npgsql's timeout, bounded by
/// the quiesce call's token (and the agent's own limit), and the refusal says which deadline ended
/// it. A fake PostgreSQL that logs the agent in and then never answers stands for a slow checkpoint.
/// </summary>
public sealed class AgentPostgresDeadlineTests
{
    [Fact]
    public void Command_NoNpgsqlTimeout_TheTokenBoundsIt()
    {
        using var command = PostgresPlugin.Command("SELECT pg_backup_start('x', true)", null);

        Assert.Equal(0, command.CommandTimeout);
    }

    [Fact]
    public async Task Quiesce_CheckpointOutlivesTheServersCall_RefusedNamingTheCallsDeadline_NoStreamError()
    {
        await using var postgres = SilentPostgres.Start();
        var plugin = new PostgresPlugin(Config(postgres.Port), NullLogger.Instance);
        using var call = new CancellationTokenSource();

        var quiesce = plugin.QuiesceAsync(new HashSet<string> { "pg" }, call.Token);
        await postgres.QueryArrived.WaitAsync(TimeSpan.FromSeconds(30));
        await call.CancelAsync();
        var refused = await Assert.ThrowsAsync<StorageException>(() => quiesce);

        Assert.StartsWith("postgresql cluster main: pg_backup_start (a checkpoint) did not finish before the server stopped waiting for this quiesce", refused.Message, StringComparison.Ordinal);
        Assert.Contains("atomic-cut", refused.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("stream", refused.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Quiesce_CallerNeverGivesUp_AgentsLimitEndsIt_AndSaysSo()
    {
        await using var postgres = SilentPostgres.Start();
        var plugin = new PostgresPlugin(Config(postgres.Port), NullLogger.Instance) { BackupCommandLimit = TimeSpan.FromMilliseconds(300) };

        var refused = await Assert.ThrowsAsync<StorageException>(() => plugin.QuiesceAsync(new HashSet<string> { "pg" }, CancellationToken.None));

        Assert.Equal(StorageError.Unavailable, refused.Error);
        // The limit runs from the start: on a loaded machine it may end the connection's opening instead.
        Assert.StartsWith("postgresql cluster main: ", refused.Message, StringComparison.Ordinal);
        Assert.Contains(" did not finish within the agent's limit of 0.3 s for a backup-mode command", refused.Message, StringComparison.Ordinal);
    }

    private static AgentConfig Config(int port) => new()
    {
        Mounts = [new AgentMountEntry("/srv/pg", "pg")],
        Postgres =
        [
            // No TLS or GSS negotiation and no type loading: the fake speaks only the start-up and then
            // stays silent; a cancelled command breaks the connection without waiting for the server.
            new AgentPostgresEntry("main", $"Host=127.0.0.1;Port={port};Username=tidemark;Database=postgres;SSL Mode=Disable;GSS Encryption Mode=Disable;Server Compatibility Mode=NoTypeLoading;Cancellation Timeout=-1;Pooling=false", "/srv/pg/data"),
        ],
    };

    /// <summary>Answers a client's start-up message (trust authentication), then reads and never answers.</summary>
    private sealed class SilentPostgres : IAsyncDisposable
    {
        private const int CancelRequestCode = 80877102;

        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly CancellationTokenSource _stop = new();
        private readonly TaskCompletionSource _queryArrived = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private Task _serving = Task.CompletedTask;

        public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

        /// <summary>Completes when the client sent something after its start-up (its first query).</summary>
        public Task QueryArrived => _queryArrived.Task;

        public static SilentPostgres Start()
        {
            var fake = new SilentPostgres();
            fake._listener.Start();
            fake._serving = fake.ServeAsync();
            return fake;
        }

        private async Task ServeAsync()
        {
            var clients = new List<Task>();
            try
            {
                while (true)
                {
                    var client = await _listener.AcceptTcpClientAsync(_stop.Token);
                    clients.Add(ServeAsync(client));
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException or InvalidOperationException)
            {
                // The test ended (the listener stopped).
            }

            await Task.WhenAll(clients);
        }

        /// <summary>A start-up gets its answer and then silence; a cancel request (what Npgsql may send for a cancelled command) is read and closed, as PostgreSQL does.</summary>
        private async Task ServeAsync(TcpClient client)
        {
            try
            {
                var stream = client.GetStream();
                var length = new byte[4];
                await stream.ReadExactlyAsync(length, _stop.Token);
                var body = new byte[BinaryPrimitives.ReadInt32BigEndian(length) - 4];
                await stream.ReadExactlyAsync(body, _stop.Token);
                if (BinaryPrimitives.ReadInt32BigEndian(body) == CancelRequestCode)
                {
                    return;
                }

                await stream.WriteAsync(StartupReply(), _stop.Token);
                var buffer = new byte[4096];
                while (await stream.ReadAsync(buffer, _stop.Token) > 0)
                {
                    _queryArrived.TrySetResult();
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or SocketException)
            {
                // The client went away or the test ended.
            }
            finally
            {
                client.Dispose();
            }
        }

        /// <summary>AuthenticationOk, the parameters Npgsql reads, BackendKeyData, ReadyForQuery (PostgreSQL protocol 3.0, 55.7).</summary>
        private static byte[] StartupReply()
        {
            var reply = new MemoryStream();
            Message(reply, 'R', [0, 0, 0, 0]);
            foreach (var (name, value) in new[] { ("server_version", "16.0"), ("server_encoding", "UTF8"), ("client_encoding", "UTF8"), ("integer_datetimes", "on"), ("standard_conforming_strings", "on"), ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC") })
            {
                Message(reply, 'S', Encoding.ASCII.GetBytes($"{name}\0{value}\0"));
            }

            Message(reply, 'K', [0, 0, 0, 1, 0, 0, 0, 2]);
            Message(reply, 'Z', "I"u8.ToArray());
            return reply.ToArray();
        }

        private static void Message(MemoryStream into, char type, byte[] body)
        {
            into.WriteByte((byte)type);
            var length = new byte[4];
            BinaryPrimitives.WriteInt32BigEndian(length, body.Length + 4);
            into.Write(length);
            into.Write(body);
        }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _listener.Stop();
            await _serving;
            _stop.Dispose();
        }
    }
}
