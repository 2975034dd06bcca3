namespace Tidemark.Cli;

/// <summary>
/// A problem with what the user typed or with the local setup; printed as one line, exit code 2 unless
/// the command says otherwise (a recovery that reaches a mail server: 1 refused, 3 unreachable).
/// </summary>
public sealed class CliException : Exception
{
    public CliException(string message)
        : base(message)
    {
    }

    public CliException(string message, int exitCode)
        : base(message)
    {
        ExitCode = exitCode;
    }

    public CliException()
    {
    }

    public CliException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public int ExitCode { get; } = CommandRunner.BadInput;
}
