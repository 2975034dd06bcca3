using System.CommandLine;
using System.CommandLine.Invocation;
using System.CommandLine.Help;

namespace Tidemark.Cli;

/// <summary>Options every command accepts (they are recursive: `tidemark volume list --json` works).</summary>
public static class GlobalOptions
{
    public static Option<string?> Server { get; } = new("--server")
    {
        Description = "URL of the Tidemark server's API (default: env TIDEMARK_SERVER, else the address of the server using --data)",
        Recursive = true,
    };

    public static Option<string?> Token { get; } = new("--token")
    {
        Description = "API token (default: env TIDEMARK_TOKEN, else DATA/token)",
        Recursive = true,
    };

    public static Option<string?> Data { get; } = new("--data")
    {
        Description = "data directory of the server (default: env TIDEMARK_DATA, else ./tidemark-data)",
        Recursive = true,
    };

    public static Option<string?> CaCertificate { get; } = new("--ca-cert")
    {
        Description = "certificate (PEM/DER) of the CA that signed the server's TLS certificate, or the server's own (default: env TIDEMARK_CA_CERT; a server found through --data is pinned by its fingerprint)",
        Recursive = true,
    };

    public static Option<bool> Json { get; } = new("--json")
    {
        Description = "print JSON instead of tables, for scripts",
        Recursive = true,
    };

    /// <summary>The options only client commands use; `serve` neither lists nor accepts them.</summary>
    public static IReadOnlyList<Option> ClientOnly { get; } = [Server, Token, CaCertificate, Json];

    /// <summary>
    /// `serve --help` lists only what serve uses: the client-only options are recursive (given
    /// anywhere on the line) so they are hidden while serve's help is written.
    /// </summary>
    public static void HideClientOptionsInServeHelp(RootCommand root)
    {
        var help = root.Options.OfType<HelpOption>().Single();
        if (help.Action is SynchronousCommandLineAction original)
        {
            help.Action = new ServeAwareHelp(original);
        }
    }

    public static void AddTo(RootCommand root)
    {
        root.Add(Server);
        root.Add(Token);
        root.Add(Data);
        root.Add(CaCertificate);
        root.Add(Json);
    }

    private sealed class ServeAwareHelp(SynchronousCommandLineAction inner) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            var serve = parseResult.CommandResult.Command.Name == "serve";
            if (serve)
            {
                foreach (var option in ClientOnly)
                {
                    option.Hidden = true;
                }
            }

            try
            {
                return inner.Invoke(parseResult);
            }
            finally
            {
                foreach (var option in ClientOnly)
                {
                    option.Hidden = false;
                }
            }
        }
    }
}
