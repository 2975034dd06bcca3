using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Snapshot stream files through the CLI: an imported snapshot is the snapshot it recreates (same id,
/// name and time), and on a terminal export and import draw a progress line.
/// </summary>
public sealed class StreamFileTests : ServerTest
{
    [Fact]
    public async Task Import_FullAndIncremental_KeepTheSourceSnapshotsTimes()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        var monday = await client.CreateSnapshotAsync("mail", "monday");
        var tuesday = await client.CreateSnapshotAsync("mail", "tuesday");
        var full = Temp.Combine("monday.tmstream");
        var delta = Temp.Combine("tuesday.tmstream");
        (await Cli("snapshot", "export", "mail@monday", full)).AssertSuccess();
        (await Cli("snapshot", "export", "mail@tuesday", delta, "--from", "mail@monday")).AssertSuccess();

        (await Cli("snapshot", "import", full, "--volume", "copy")).AssertSuccess();
        (await Cli("snapshot", "import", delta, "--volume", "copy")).AssertSuccess();
        var imported = await client.ListSnapshotsAsync("copy");

        Assert.Equal(["monday", "tuesday"], imported.Select(s => s.Name));
        Assert.Equal([monday.CreatedAt, tuesday.CreatedAt], imported.Select(s => s.CreatedAt));
    }

    [Fact]
    public async Task ExportAndImport_OnATerminal_DrawProgress()
    {
        using var client = Server.Client();
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 8 << 20));
        await client.CreateSnapshotAsync("mail", "monday");
        var file = Temp.Combine("monday.tmstream");

        // script(1) from util-linux runs the CLI on a pseudo-terminal, as a person at a shell would.
        var export = (await OnTerminal("snapshot", "export", "mail@monday", file)).AssertSuccess();
        var import = (await OnTerminal("snapshot", "import", file, "--volume", "copy")).AssertSuccess();
        var piped = (await Cli("snapshot", "import", file, "--volume", "copy2")).AssertSuccess();

        Assert.Contains("export mail@monday ", export.StandardOutput, StringComparison.Ordinal);
        Assert.Matches(@"import monday\.tmstream \[#{30}\] 100\.0% ", import.StandardOutput);
        Assert.Empty(piped.StandardError);
    }

    private Task<ProcessResult> OnTerminal(params string[] arguments)
    {
        var command = string.Join(' ', new[] { "dotnet", CliProcess.DllPath, "--data", Server.DataDirectory }.Concat(arguments).Select(a => $"'{a}'"));
        return ProcessRunner.RunAsync(TimeSpan.FromSeconds(60), "script", "-q", "-e", "-c", command, "/dev/null");
    }

    private Task<ProcessResult> Cli(params string[] arguments) => CliProcess.RunAsync(["--data", Server.DataDirectory, .. arguments]);
}
