using System.CommandLine;
using System.Globalization;
using Tidemark.Api;

namespace Tidemark.Cli.Commands;

/// <summary>`tidemark snapshot export|import`: self-describing, checksummed snapshot streams (mirror-and-ship, backup, tape).</summary>
public static class StreamCommands
{
    public static Command Export()
    {
        var address = new Argument<string>("snapshot") { Description = "snapshot to export, VOLUME@SNAPSHOT" };
        var file = new Argument<string>("file") { Description = "file to write, or - for standard output" };
        var from = new Option<string?>("--from") { Description = "older snapshot VOLUME@OLDER: write only what changed since it (incremental)" };
        var level = new Option<int?>("--level") { Description = "zstd level 1-22, 0 for none (default 3)" };
        var command = new Command("export", "Write a snapshot (or what changed since an older one) as a stream file") { address, file, from, level };
        command.SetClientAction(async (p, client, json, ct) =>
        {
            var snapshot = p.GetValue(address)!;
            CommandRunner.SplitAddress(snapshot);
            var path = p.GetValue(file)!;
            long bytes;
            if (path == "-")
            {
                await using var stdout = Console.OpenStandardOutput();
                bytes = await client.ExportSnapshotAsync(snapshot, p.GetValue(from), p.GetValue(level), stdout, ct);
                return;
            }

            var temp = path + ".partial";
            try
            {
                // The stream's length is not known before its end: the line shows bytes and rate.
                var progress = TransferProgress.Start(json, $"export {snapshot}", null);
                await using (var output = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20, FileOptions.Asynchronous))
                {
                    bytes = await client.ExportSnapshotAsync(snapshot, p.GetValue(from), p.GetValue(level), progress?.Wrap(output) ?? output, ct);
                    await output.FlushAsync(ct);
                }

                progress?.Finish();

                File.Move(temp, path, overwrite: true); // a complete stream or none: never a truncated file under the final name
            }
            catch
            {
                File.Delete(temp);
                throw;
            }

            VolumeCommands.Done(json, $"wrote {snapshot}{(p.GetValue(from) is { } f ? $" (changes since {f})" : "")} to {path}: {bytes.ToString("N0", CultureInfo.InvariantCulture)} bytes");
        });
        return command;
    }

    public static Command Import()
    {
        var file = new Argument<string>("file") { Description = "stream file made by 'tidemark snapshot export', or - for standard input" };
        var volume = new Option<string?>("--volume") { Description = "import into this volume instead of the stream's" };
        var command = new Command("import", "Apply a snapshot stream: a full one creates the volume, an incremental one adds a snapshot to it") { file, volume };
        command.SetClientAction(async (p, client, json, ct) =>
        {
            var path = p.GetValue(file)!;
            Stream input;
            try
            {
                input = path == "-" ? Console.OpenStandardInput() : new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, FileOptions.Asynchronous);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new CliException($"cannot read {path} ({ex.Message})");
            }

            await using (input)
            {
                var progress = TransferProgress.Start(json, $"import {Path.GetFileName(path)}", input.CanSeek ? input.Length : null);
                var result = await client.ImportSnapshotAsync(progress?.Wrap(input) ?? input, p.GetValue(volume), ct);
                progress?.Finish();
                if (json)
                {
                    Output.Json(result);
                    return;
                }

                Output.Fields(
                    ("snapshot", result.Snapshot.Address),
                    ("kind", result.Incremental ? "incremental" : "full"),
                    ("records", result.Records.ToString("N0", CultureInfo.InvariantCulture)),
                    ("data", Output.Size(result.DataBytes)),
                    ("zeroed", Output.Size(result.ZeroBytes)));
            }
        });
        return command;
    }
}
