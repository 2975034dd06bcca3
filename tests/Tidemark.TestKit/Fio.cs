using System.Text.Json;

namespace Tidemark.TestKit;

/// <summary>fio runs the real-client tests share (Debian's fio, its nbd engine).</summary>
public static class Fio
{
    /// <summary>
    /// Random 4 KiB writes over the whole <paramref name="sizeBytes"/> of the NBD export at
    /// <paramref name="url"/>, at <paramref name="queueDepth"/>, then all of it read back at the same
    /// depth and checked (crc32c, fatal on the first mismatch). Throws unless fio exits with 0, reports
    /// no error and wrote and read the whole size.
    /// </summary>
    public static async Task RandomWritesWithVerifyAsync(string url, int queueDepth, long sizeBytes, TimeSpan timeout)
    {
        var result = (await ProcessRunner.RunAsync(
            timeout,
            "fio",
            "--name=verify",
            "--ioengine=nbd",
            $"--uri={url}",
            "--rw=randwrite",
            "--bs=4k",
            $"--iodepth={queueDepth}",
            $"--size={sizeBytes}",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--output-format=json")).AssertSuccess();

        var output = result.StandardOutput + result.StandardError;
        if (output.Contains("Pattern verification", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"fio found data that does not verify:\n{output}");
        }

        using var json = JsonDocument.Parse(result.StandardOutput[result.StandardOutput.IndexOf('{', StringComparison.Ordinal)..]);
        var job = json.RootElement.GetProperty("jobs")[0];
        var error = job.GetProperty("error").GetInt32();
        var written = job.GetProperty("write").GetProperty("io_bytes").GetInt64();
        var read = job.GetProperty("read").GetProperty("io_bytes").GetInt64();
        if (error != 0 || written != sizeBytes || read != sizeBytes)
        {
            throw new InvalidOperationException(
                $"fio: error {error}, wrote {written} and verified {read} of {sizeBytes} bytes\n{output}");
        }
    }
}
