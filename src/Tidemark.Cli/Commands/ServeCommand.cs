using System.CommandLine;
using Tidemark.Server;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark serve`: the appliance in this process (the only command that is not an API client).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "config file (default DATA/tidemark.json; written with the settings in force on first start)" };
        var http = new Option<string?>("--http") { Description = $"HTTP API address IP:PORT, port 0 for any free port [config: http; default {ServerSettings.DefaultHttp}]" };
        var nbd = new Option<string?>("--nbd") { Description = $"NBD listener address IP:PORT, or off [config: nbd; default {ServerSettings.DefaultNbd}]" };
        var nbdSocket = new Option<string?>("--nbd-socket") { Description = "also serve NBD on this Unix-domain socket (mode 0600; relative to DATA), for clients on this host: nbd+unix:///NAME?socket=PATH [config: nbdSocket; default off]" };
        var receivePoll = new Option<string?>("--receive-poll") { Description = "how long an NBD or iSCSI connection polls for its next request (or the rest of a write's data) before sleeping, e.g. 50us, or off: lower latency at queue depth 1 for CPU [config: receivePoll; default 50us]" };
        var handshakeTimeout = new Option<string?>("--handshake-timeout") { Description = "how long an NBD or iSCSI client may take to finish its handshake or login before it is closed [config: handshakeTimeout; default 10s]" };
        var idleTimeout = new Option<string?>("--idle-timeout") { Description = "close an NBD or iSCSI connection that sent nothing for this long, e.g. 8h, or off [config: idleTimeout; default off]" };
        var sendTimeout = new Option<string?>("--send-timeout") { Description = "close an NBD or iSCSI connection whose client has left its replies unread for this long, e.g. 60s, or off [config: sendTimeout; default 60s]" };
        var maxConnections = new Option<int?>("--max-connections") { Description = $"NBD (and separately iSCSI) connections open at once; more are refused [config: maxConnections; default {ConnectionLimits.DefaultMaxConnections}]" };
        var maxPerSource = new Option<int?>("--max-connections-per-source") { Description = $"NBD (and separately iSCSI) connections open at once from one IP address [config: maxConnectionsPerSource; default {ConnectionLimits.DefaultMaxConnectionsPerSource}]" };
        var iscsi = new Option<string?>("--iscsi") { Description = $"iSCSI portal address IP:PORT, port 0 for any free port, or off [config: iscsi; default {ServerSettings.DefaultIscsi}]" };
        var storeCapacity = new Option<string?>("--store-capacity") { Description = "capacity of the pool's first file store when the pool is created, e.g. 100G, or auto for the free space [config: storeCapacity; default auto]" };
        var storePath = new Option<string?>("--store-path") { Description = "file or block device of the pool's first store when the pool is created, or 'rados:POOL[/PREFIX]?conf=FILE&id=USER' for a Ceph RADOS pool [config: storePath; default DATA/pool/store-0.dat]" };
        var mapCache = new Option<string?>("--map-cache") { Description = $"memory for cached volume map pages [config: mapCache; default {ServerSettings.DefaultMapCache}]" };
        var metadataCache = new Option<string?>("--metadata-cache") { Description = $"memory for the metadata store's block cache [config: metadataCache; default {ServerSettings.DefaultMetadataCache}]" };
        var replication = new Option<string?>("--replication") { Description = $"replication listener IP:PORT for paired servers only (mutual TLS 1.3), port 0 for any free port, or off [config: replication; default {ServerSettings.DefaultReplication}]" };
        var retryDelay = new Option<string?>("--replication-retry-delay") { Description = "first wait before retrying a broken replication transfer, doubling per attempt, e.g. 500ms, 1s [config: replicationRetryDelay; default 1s]" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "TLS for the API: a PEM certificate file, self-signed (made on first start in DATA/tls), or off [config: tlsCertificate; default off]" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "PEM private key of --tls-cert when that is a file [config: tlsKey]" };
        var logLevel = new Option<string?>("--log-level") { Description = "Trace, Debug, Information, Warning or Error [config: logLevel; default Information]" };
        var command = new Command(
            "serve",
            "Run the Tidemark appliance: the pool in DATA/pool (created on first start), the REST API, the NBD listener, the iSCSI portal "
            + "and the replication listener for paired servers. "
            + "The API token is in DATA/token (mode 0600). Settings come from the config file; flags override it. Ctrl-C or SIGTERM flush and close the pool.")
        {
            config, http, nbd, nbdSocket, iscsi, receivePoll, handshakeTimeout, idleTimeout, sendTimeout, maxConnections, maxPerSource, replication, retryDelay, storeCapacity, storePath, mapCache, metadataCache, tlsCert, tlsKey, logLevel,
        };
        command.Validators.Add(result =>
        {
            // Recursive options reach serve too; it would silently ignore them.
            foreach (var option in GlobalOptions.ClientOnly.Where(o => result.GetResult(o) is { Implicit: false }))
            {
                result.AddError($"serve does not use {option.Name}: it is an option of the client commands; a server's address is --http, its data directory --data");
            }
        });
        command.SetAction(async (parse, ct) =>
        {
            var options = new ServeOptions
            {
                DataDirectory = ServerLocator.DataDirectory(parse.GetValue(GlobalOptions.Data)),
                ConfigPath = parse.GetValue(config),
                Http = parse.GetValue(http),
                Nbd = parse.GetValue(nbd),
                NbdSocket = parse.GetValue(nbdSocket),
                ReceivePoll = parse.GetValue(receivePoll),
                HandshakeTimeout = parse.GetValue(handshakeTimeout),
                IdleTimeout = parse.GetValue(idleTimeout),
                SendTimeout = parse.GetValue(sendTimeout),
                MaxConnections = parse.GetValue(maxConnections),
                MaxConnectionsPerSource = parse.GetValue(maxPerSource),
                Iscsi = parse.GetValue(iscsi),
                StoreCapacity = parse.GetValue(storeCapacity),
                StorePath = parse.GetValue(storePath),
                MapCache = parse.GetValue(mapCache),
                MetadataCache = parse.GetValue(metadataCache),
                LogLevel = parse.GetValue(logLevel),
                TlsCertificate = parse.GetValue(tlsCert),
                TlsKey = parse.GetValue(tlsKey),
                Replication = parse.GetValue(replication),
                ReplicationRetryDelay = parse.GetValue(retryDelay),
            };
            TidemarkServer server;
            try
            {
                server = await TidemarkServer.StartAsync(options, ct);
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidDataException or IOException or StorageException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"error: cannot start: {ex.Message}");
                return CommandRunner.BadInput;
            }

            await using (server)
            {
                await server.WaitForShutdownAsync(CancellationToken.None);
            }

            return 0;
        });
        return command;
    }
}
