using System.CommandLine;
using Tidemark.Cli;
using Tidemark.Cli.Commands;

var root = new RootCommand("Tidemark: block storage with instant snapshots, writable views and groups. `tidemark serve` runs the appliance; every other command talks to it over its REST API.");
GlobalOptions.AddTo(root);
root.Add(ServeCommand.Create());
root.Add(PoolCommands.Create());
root.Add(VolumeCommands.Create());
root.Add(SnapshotCommands.Create());
root.Add(ViewCommands.Create());
root.Add(GroupCommands.Create());
root.Add(ExportCommands.Create());
root.Add(EventCommands.Create());
root.Add(TokenCommands.Create());
root.Add(JobCommands.Create());
root.Add(PolicyCommands.Create());
root.Add(PartnerCommands.Create());
root.Add(ReplicaCommands.Create());
root.Add(CompletionCommand.Create());
root.Add(PoolCommands.CreateVerify());

// Termination is handled by `serve` itself (flush and close the pool, however long that takes), so
// System.CommandLine must not cut the process off after its default two seconds.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
