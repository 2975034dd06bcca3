using System.CommandLine;
using System.Globalization;
using Tidemark.Agent;

namespace Tidemark.Cli.Commands;

/// <summary>
/// `tidemark agent`: the agent on an application host (ADR 0015). Not an API client: it never holds
/// the server's token; the server calls it over mutual TLS.
/// </summary>
public static class AgentCommands
{
    public const string DefaultDirectory = "/var/lib/tidemark-agent";

    public static Command Create()
    {
        var dir = new Option<string?>("--agent-dir") { Description = $"the agent's directory: agent.json and its identity [default $TIDEMARK_AGENT_DIR or {DefaultDirectory}]" };

        var serverFingerprint = new Option<string>("--server-fingerprint") { Description = "the server's fingerprint ('tidemark partner identity' on the server)", Required = true };
        var listen = new Option<string?>("--listen") { Description = "address the agent listens on, IP:PORT [default 0.0.0.0:8420]" };
        var mounts = new Option<string[]>("--mount") { Description = "a mount point and the volume under it, PATH=VOLUME (repeatable)", AllowMultipleArgumentsPerToken = false };
        var deadline = new Option<double?>("--deadline") { Description = $"seconds after a quiesce the agent resumes by itself if the server does not [default {AgentConfig.DefaultDeadlineSeconds}]" };
        var name = new Option<string?>("--name") { Description = "the host's name [default: the machine name]" };
        var postgres = new Option<string[]>("--postgres") { Description = "a PostgreSQL cluster to put in backup mode, NAME:CONNECTION-STRING, e.g. 'main:Host=/run/postgresql;Username=postgres' (repeatable)" };
        var postgresMode = new Option<string?>("--postgres-mode") { Description = "for the --postgres clusters of this command: backup (pg_backup_start around each cut, a checkpoint per snapshot) or atomic-cut (no backup mode; every directory of the cluster must be in the same cut, and a view starts by crash recovery) [default backup]" };
        var mail = new Option<string[]>("--mail") { Description = "a mail store to hold and flush, root=MAILROOT[,postfix=CONFIG-DIR][,dovecot=DOVECOT.CONF][,name=NAME][,format=maildir|mdbox][,index-before-hold=SECONDS (5; 0: none)], e.g. 'root=/srv/mail,postfix=/etc/postfix,dovecot=/etc/dovecot/dovecot.conf' (repeatable)" };
        var pair = new Command("pair", "Pair this host with a server: only that server may call the agent. Prints what to run on the server") { dir, serverFingerprint, listen, mounts, deadline, name, postgres, postgresMode, mail };
        pair.SetAction(parse => Run(() =>
        {
            var directory = Directory(parse.GetValue(dir));
            var config = AgentConfig.Load(directory);
            var fingerprint = parse.GetValue(serverFingerprint)!.Replace(":", "", StringComparison.Ordinal).ToLowerInvariant();
            var declared = config.Mounts.ToList();
            foreach (var m in parse.GetValue(mounts) ?? [])
            {
                var eq = m.IndexOf('=', StringComparison.Ordinal);
                if (eq <= 0 || eq == m.Length - 1)
                {
                    throw new CliException($"--mount takes PATH=VOLUME, not '{m}'");
                }

                var path = LocalMounts.Normalize(m[..eq]);
                declared.RemoveAll(d => d.Path == path);
                declared.Add(new AgentMountEntry(path, m[(eq + 1)..]));
            }

            var clusters = config.Postgres.ToList();
            var mode = parse.GetValue(postgresMode) ?? AgentPostgresEntry.BackupMode;
            if (!AgentPostgresEntry.Modes.Contains(mode))
            {
                throw new CliException($"--postgres-mode takes {string.Join(" or ", AgentPostgresEntry.Modes)}, not '{mode}'");
            }

            if (parse.GetValue(postgresMode) is not null && (parse.GetValue(postgres) ?? []).Length == 0)
            {
                throw new CliException("--postgres-mode applies to the clusters given with --postgres on the same command; give them again with it (an entry already paired keeps its mode: edit it in agent.json)");
            }

            foreach (var c in parse.GetValue(postgres) ?? [])
            {
                var colon = c.IndexOf(':', StringComparison.Ordinal);
                if (colon <= 0 || colon == c.Length - 1)
                {
                    throw new CliException($"--postgres takes NAME:CONNECTION-STRING, not '{c}'");
                }

                clusters.RemoveAll(x => x.Name == c[..colon]);
                clusters.Add(new AgentPostgresEntry(c[..colon], c[(colon + 1)..], Mode: mode));
            }

            var stores = config.Mail.ToList();
            foreach (var m in parse.GetValue(mail) ?? [])
            {
                var store = ParseMail(m);
                stores.RemoveAll(x => x.Name == store.Name);
                stores.Add(store);
            }

            config = config with
            {
                Postgres = clusters,
                Mail = stores,
                Name = parse.GetValue(name) ?? config.Name,
                Listen = parse.GetValue(listen) ?? config.Listen,
                DeadlineSeconds = parse.GetValue(deadline) ?? config.DeadlineSeconds,
                Servers = config.Servers.Any(s => s.Fingerprint == fingerprint) ? config.Servers : [.. config.Servers, new AgentServerEntry(fingerprint, DateTimeOffset.UtcNow)],
                Mounts = declared,
            };
            config.Validate("the options");
            if (OperatingSystem.IsLinux() && LocalMounts.DeclaredMountHolding(config, directory) is { } holding)
            {
                throw new CliException(LocalMounts.AgentDirectoryProblem(directory, holding));
            }

            config.Save(directory);
            using var identity = AgentIdentity.LoadOrCreate(directory);
            Output.Fields(("agent", config.HostName), ("fingerprint", identity.Fingerprint), ("listen", config.Listen), ("config", AgentConfig.PathIn(directory)));
            Console.WriteLine();
            Console.WriteLine($"on the server: tidemark host add {config.HostName} ADDRESS:{AgentConfig.ParseListen(config.Listen, "listen").Port} --fingerprint {identity.Fingerprint}");
        }));

        var identityCommand = new Command("identity", "Show this agent's fingerprint (for 'tidemark host add' on the server)") { dir };
        identityCommand.SetAction(parse => Run(() =>
        {
            using var identity = AgentIdentity.LoadOrCreate(Directory(parse.GetValue(dir)));
            Output.Fields(("fingerprint", identity.Fingerprint));
        }));

        var runListen = new Option<string?>("--listen") { Description = "override the config's listen address, IP:PORT (port 0: any free port)" };
        var run = new Command("run", "Run the agent: it answers the paired server's quiesce and resume calls and resumes by itself at its deadline") { dir, runListen };
        run.SetAction(async (parse, ct) =>
        {
            AgentHost host;
            try
            {
                host = await AgentHost.StartAsync(Directory(parse.GetValue(dir)), parse.GetValue(runListen), ct);
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"error: cannot start the agent: {ex.Message}");
                return CommandRunner.BadInput;
            }

            await using (host)
            {
                // A line for scripts and tests: where it listens, now that a port 0 is bound.
                Console.WriteLine($"agent listening on {host.Endpoint} fingerprint {host.Identity.Fingerprint}");
                await host.WaitForShutdownAsync(CancellationToken.None);
            }

            return 0;
        });

        return new Command("agent", "The agent on an application host: quiesces applications around snapshots when the server asks") { run, pair, identityCommand };
    }

    /// <summary>root=MAILROOT[,postfix=DIR][,dovecot=CONF][,name=NAME][,format=F][,index-before-hold=S]: named fields, as paths may hold colons.</summary>
    private static AgentMailEntry ParseMail(string text)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            var key = eq > 0 ? part[..eq] : "";
            if (key is not ("root" or "postfix" or "dovecot" or "name" or "format" or "index-before-hold") || eq == part.Length - 1 || !fields.TryAdd(key, part[(eq + 1)..]))
            {
                throw new CliException($"--mail takes root=MAILROOT[,postfix=DIR][,dovecot=CONF][,name=NAME][,format=maildir|mdbox][,index-before-hold=SECONDS], each once, not '{text}'");
            }
        }

        if (!fields.TryGetValue("root", out var root))
        {
            throw new CliException($"--mail needs root=MAILROOT (the directory with one home per user), not '{text}'");
        }

        // Pairing runs on the mail host: a path that is not there now is a typo, and an agent that
        // finds it missing only at the first snapshot (at 3 a.m.) is worse than a refusal here.
        if (!Path.IsPathRooted(root) || !System.IO.Directory.Exists(root))
        {
            throw new CliException($"--mail root={root}: no such directory; give the absolute path of the mail root (one home per user), mounted");
        }

        if (fields.GetValueOrDefault("postfix") is { } postfix && !File.Exists(Path.Combine(postfix, "main.cf")))
        {
            throw new CliException($"--mail postfix={postfix}: no Postfix configuration there (no main.cf); give Postfix's config directory, e.g. /etc/postfix");
        }

        if (fields.GetValueOrDefault("dovecot") is { } dovecot && !File.Exists(dovecot))
        {
            throw new CliException($"--mail dovecot={dovecot}: no such file; give Dovecot's configuration file, e.g. /etc/dovecot/dovecot.conf");
        }

        var indexBeforeHold = AgentMailEntry.DefaultIndexBeforeHoldSeconds;
        if (fields.GetValueOrDefault("index-before-hold") is { } bound && !(double.TryParse(bound, NumberStyles.Float, CultureInfo.InvariantCulture, out indexBeforeHold) && indexBeforeHold >= 0))
        {
            throw new CliException($"--mail index-before-hold={bound}: give the seconds the doveadm index run before a hold may take (0: none)");
        }

        return new AgentMailEntry(fields.GetValueOrDefault("name") ?? AgentMailEntry.DefaultName, LocalMounts.Normalize(root), fields.GetValueOrDefault("postfix"), fields.GetValueOrDefault("dovecot"), fields.GetValueOrDefault("format") ?? "maildir", IndexBeforeHoldSeconds: indexBeforeHold);
    }

    private static string Directory(string? given) =>
        given ?? Environment.GetEnvironmentVariable("TIDEMARK_AGENT_DIR") ?? DefaultDirectory;

    private static int Run(Action action)
    {
        try
        {
            action();
            return 0;
        }
        catch (CliException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return CommandRunner.BadInput;
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidDataException or IOException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return CommandRunner.BadInput;
        }
    }
}
