using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Tidemark.Api;
using Tidemark.Engine;
using Tidemark.Replication;

namespace Tidemark.Server.Api;

/// <summary>
/// Snapshot streams over the API: GET .../snapshots/{snapshot}/stream[?from=OLDER] sends one
/// (application/octet-stream), POST /api/v1/streams[?volume=NAME] applies one. The stream format and
/// the engine are synchronous: they run on a dedicated thread joined to the body by a bounded pipe
/// (<see cref="SynchronousBody"/>), so body I/O stays asynchronous.
/// </summary>
public static class StreamEndpoints
{
    public const string ContentType = "application/vnd.tidemark.snapshot-stream";

    public static void MapStreamApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/volumes/{volume}/snapshots/{snapshot}/stream", async (HttpContext context, Pool pool, string volume, string snapshot, string? from, int? level) =>
        {
            var address = $"{volume}@{snapshot}";
            pool.GetSnapshot(address);
            var baseAddress = from is null ? null : from.Contains('@', StringComparison.Ordinal) ? from : $"{volume}@{from}";
            if (baseAddress is not null)
            {
                pool.GetSnapshot(baseAddress);
            }

            context.Response.ContentType = ContentType;
            context.Response.Headers.ContentDisposition = $"attachment; filename=\"{volume}@{snapshot}.tmstream\"";
            var options = new StreamExportOptions { CompressionLevel = level ?? 3 };
            await SynchronousBody.WriteAsync(context.Response.Body, (output, ct) => SnapshotStreamWriter.Write(pool, address, baseAddress, output, options, ct), context.RequestAborted);
        }).WithTags("streams");

        app.MapPost("/api/v1/streams", async (HttpContext context, Pool pool, ClientSessions sessions, string? volume) =>
        {
            context.Features.Get<IHttpMaxRequestBodySizeFeature>()!.MaxRequestBodySize = null;
            try
            {
                var options = new StreamImportOptions
                {
                    Volume = volume,
                    KeepSnapshotTime = true,

                    // An incremental stream writes into the live volume: its clients would see the image change under them.
                    HeaderRead = header =>
                    {
                        if (header.IsIncremental)
                        {
                            var target = volume ?? header.Volume;
                            sessions.ThrowIfAttached(target, $"importing {header.SnapshotName} into {target}", canForce: false);
                        }
                    },
                };
                var result = await SynchronousBody.ReadAsync(context.Request.Body, input => SnapshotStreamReader.Import(pool, input, options, context.RequestAborted), context.RequestAborted);
                var snapshot = result.Snapshot!;
                var dto = new StreamImportDto(snapshot.ToDto(), result.Header.IsIncremental, result.Records, result.DataBytes, result.ZeroBytes);
                return Results.Created($"/api/v1/volumes/{Uri.EscapeDataString(snapshot.Volume)}/snapshots/{Uri.EscapeDataString(snapshot.Name)}", dto);
            }
            catch (StreamImportException ex) when (ex.InnerException is StorageException inner)
            {
                throw new StorageException(inner.Error, inner.Message, ex);
            }
        }).WithName("snapshot.import").WithTags("streams");
    }
}
