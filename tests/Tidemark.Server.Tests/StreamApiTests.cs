using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Tidemark.Api;
using Tidemark.Server.Tests.Infrastructure;

namespace Tidemark.Server.Tests;

/// <summary>
/// Snapshot streams over the HTTP API with clients that go away mid-stream: the server's side of
/// the transfer (which runs the synchronous stream format beside the asynchronous body) ends and
/// frees what it held, and the next transfer works.
/// </summary>
public sealed class StreamApiTests : ServerTest
{
    private static readonly TimeSpan Deadline = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Import_ClientDisconnectsMidStream_LeavesNoVolumeAndTheNextImportWorks()
    {
        using var client = Server.Client();
        var stream = await SnapshotStreamWithDataAsync(client);

        // The whole length is announced and half of it sent, then the connection closes: the body breaks off.
        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(Server.Http.Host, Server.Http.Port);
            var wire = socket.GetStream();
            var head = $"POST /api/v1/streams?volume=copy HTTP/1.1\r\nHost: {Server.Http.Authority}\r\nAuthorization: Bearer {Server.Token}\r\n"
                + $"Content-Type: application/vnd.tidemark.snapshot-stream\r\nContent-Length: {stream.Length}\r\n\r\n";
            await wire.WriteAsync(Encoding.ASCII.GetBytes(head));
            await wire.WriteAsync(stream.AsMemory(0, stream.Length / 2));
            await wire.FlushAsync();
        }

        // The import that broke off deletes the volume it created; nothing of it stays. The server
        // handles the broken request on its own time (it may not even have created the volume yet
        // when the socket closes here), so the same import is tried again while that volume is
        // still there; it can only succeed once the broken import's volume is gone, and the broken
        // import deletes only a volume it created itself.
        using var deadline = new CancellationTokenSource(Deadline);
        StreamImportDto imported;
        while (true)
        {
            try
            {
                imported = await client.ImportSnapshotAsync(new MemoryStream(stream), "copy", deadline.Token);
                break;
            }
            catch (TidemarkApiException ex) when (ex.Status == System.Net.HttpStatusCode.Conflict && ex.Message.Contains("volume copy exists", StringComparison.Ordinal))
            {
                await Task.Delay(100, deadline.Token);
            }
        }

        Assert.Equal("monday", imported.Snapshot.Name);
        Assert.True(imported.DataBytes >= 4 << 20, $"{imported.DataBytes} data bytes");
        var verify = await client.VerifyAsync();
        Assert.True(verify.Clean, string.Join("; ", verify.Problems));
    }

    [Fact]
    public async Task Export_ClientStopsReadingMidStream_TheNextExportIsWhole()
    {
        using var client = Server.Client();
        var whole = await SnapshotStreamWithDataAsync(client);

        using (var socket = new TcpClient())
        {
            await socket.ConnectAsync(Server.Http.Host, Server.Http.Port);
            var wire = socket.GetStream();
            var head = $"GET /api/v1/volumes/mail/snapshots/monday/stream?level=1 HTTP/1.1\r\nHost: {Server.Http.Authority}\r\nAuthorization: Bearer {Server.Token}\r\n\r\n";
            await wire.WriteAsync(Encoding.ASCII.GetBytes(head));
            var first = new byte[64 << 10];
            await wire.ReadAtLeastAsync(first, first.Length);
            Assert.StartsWith("HTTP/1.1 200", Encoding.ASCII.GetString(first, 0, 12), StringComparison.Ordinal);
        }

        var again = new MemoryStream();
        await client.ExportSnapshotAsync("mail@monday", null, 1, again);
        var fromWhole = await client.ImportSnapshotAsync(new MemoryStream(whole), "copy");
        again.Position = 0;
        var fromAgain = await client.ImportSnapshotAsync(again, "copy2");

        // Each export has its own stream id, so the two are compared by what they recreate.
        Assert.Equal((fromWhole.Records, fromWhole.DataBytes), (fromAgain.Records, fromAgain.DataBytes));
        Assert.True(fromAgain.DataBytes >= 4 << 20, $"{fromAgain.DataBytes} data bytes");
    }

    /// <summary>A full stream of mail@monday holding 4 MiB of random (incompressible) data, so the stream is several pipe-fulls long.</summary>
    private async Task<byte[]> SnapshotStreamWithDataAsync(TidemarkClient client)
    {
        await client.CreateVolumeAsync(new CreateVolumeRequest("mail", 16 << 20));
        var live = await client.CreateExportAsync(new CreateExportRequest("mail", "mail", "nbd"));
        var data = Temp.Combine("random.bin");
        await File.WriteAllBytesAsync(data, RandomNumberGenerator.GetBytes(4 << 20));
        (await ProcessRunner.RunAsync("qemu-io", "-f", "raw", "-c", $"write -s {data} 0 4M", live.Url!)).AssertSuccess();
        await client.CreateSnapshotAsync("mail", "monday");
        var stream = new MemoryStream();
        await client.ExportSnapshotAsync("mail@monday", null, 1, stream);
        return stream.ToArray();
    }
}
