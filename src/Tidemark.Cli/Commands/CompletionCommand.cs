using System.CommandLine;

namespace Tidemark.Cli.Commands;

/// <summary>
/// `tidemark completion bash|zsh` prints a completion script. The script asks tidemark itself for
/// candidates through System.CommandLine's [suggest] directive, so completion always matches the
/// commands and options of the installed version.
/// </summary>
public static class CompletionCommand
{
    public const string Bash = """
        # tidemark shell completion. Load it with:  source <(tidemark completion bash)
        # or save it as /etc/bash_completion.d/tidemark.
        _tidemark_complete() {
          local IFS=$'\n'
          local candidates
          candidates=$("${COMP_WORDS[0]}" "[suggest:${COMP_POINT}]" "${COMP_LINE}" 2>/dev/null)
          COMPREPLY=( $(compgen -W "$candidates" -- "${COMP_WORDS[COMP_CWORD]}") )
        }
        complete -o default -F _tidemark_complete tidemark ./tidemark
        """;

    public static Command Create()
    {
        var shell = new Argument<string>("shell") { Description = "bash or zsh" };
        shell.AcceptOnlyFromAmong("bash", "zsh");
        var command = new Command("completion", "Print a shell completion script: source <(tidemark completion bash)") { shell };
        command.SetAction(parse =>
        {
            var script = parse.GetValue(shell) == "zsh"
                ? "# tidemark completion for zsh, through its bash compatibility.\nautoload -U +X bashcompinit && bashcompinit\n" + Bash
                : Bash;
            Console.Out.WriteLine(script);
            return 0;
        });
        return command;
    }
}
