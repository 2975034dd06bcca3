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
root.Add(AlertCommands.Create());
root.Add(PolicyCommands.Create());
root.Add(PartnerCommands.Create());
root.Add(ReplicaCommands.Create());
root.Add(HostCommands.Create());
root.Add(AgentCommands.Create());
if (OperatingSystem.IsLinux())
{
    // Recovery mounts snapshots with nbdfuse, loop devices and mount: a Linux recovery host.
    root.Add(RecoverCommands.Create());
}

root.Add(CompletionCommand.Create());
root.Add(PoolCommands.CreateVerify());

GlobalOptions.HideClientOptionsInServeHelp(root);
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    // A typo, an unknown command or a missing option is bad input (exit 2, README), reported in one
    // line per problem instead of the whole help page.
    foreach (var error in parse.Errors)
    {
        Console.Error.WriteLine($"error: {error.Message}");
    }

    Console.Error.WriteLine($"'{CommandPath(parse.CommandResult.Command)} --help' shows the usage");
    return CommandRunner.BadInput;
}

// Termination is handled by `serve` itself (flush and close the pool, however long that takes), so
// System.CommandLine must not cut the process off after its default two seconds.
return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });

static string CommandPath(Command command)
{
    var names = new List<string>();
    for (Command? c = command; c is not null and not RootCommand; c = c.Parents.OfType<Command>().FirstOrDefault())
    {
        names.Insert(0, c.Name);
    }

    return string.Join(' ', ["tidemark", .. names]);
}
