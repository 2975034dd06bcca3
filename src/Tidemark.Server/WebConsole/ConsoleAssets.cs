using System.IO.Compression;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http;
using Microsoft.Net.Http.Headers;

namespace Tidemark.Server.WebConsole;

/// <summary>
/// The console's files, embedded in this assembly at build time (ADR 0016): read once, compressed
/// once (Brotli and gzip, chosen by Accept-Encoding), served with an ETag so a reload costs a 304.
/// Every page answer carries a Content-Security-Policy that allows only this server's own scripts
/// and styles and no framing, so an injected string cannot run and the console cannot be clickjacked.
/// </summary>
public sealed class ConsoleAssets
{
    public const string ResourcePrefix = "console/";

    public const string SecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

    private readonly Dictionary<string, Asset> _assets = new(StringComparer.Ordinal);

    public ConsoleAssets()
    {
        var assembly = typeof(ConsoleAssets).Assembly;
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var memory = new MemoryStream();
            stream.CopyTo(memory);
            var bytes = memory.ToArray();
            var file = name[ResourcePrefix.Length..];
            _assets[file] = new Asset(
                ContentType(file),
                $"\"{Convert.ToHexStringLower(SHA256.HashData(bytes))[..20]}\"",
                bytes,
                Compress(bytes, s => new BrotliStream(s, CompressionLevel.SmallestSize)),
                Compress(bytes, s => new GZipStream(s, CompressionLevel.SmallestSize)));
        }
    }

    public IReadOnlyCollection<string> Files => _assets.Keys;

    /// <summary>Answers with <paramref name="file"/>; false when there is no such file.</summary>
    public bool TryWrite(HttpContext context, string file, out Task written)
    {
        if (!_assets.TryGetValue(file, out var asset))
        {
            written = Task.CompletedTask;
            return false;
        }

        var response = context.Response;
        var headers = response.Headers;
        headers.ContentType = asset.ContentType;
        headers.ETag = asset.ETag;
        headers.CacheControl = "no-cache";
        headers.Vary = HeaderNames.AcceptEncoding;
        headers.XContentTypeOptions = "nosniff";
        headers.ContentSecurityPolicy = SecurityPolicy;
        headers["Referrer-Policy"] = "no-referrer";
        if (context.Request.Headers.IfNoneMatch.ToString() == asset.ETag)
        {
            response.StatusCode = StatusCodes.Status304NotModified;
            written = Task.CompletedTask;
            return true;
        }

        var accept = context.Request.Headers.AcceptEncoding.ToString();
        var (body, encoding) = accept.Contains("br", StringComparison.OrdinalIgnoreCase) ? (asset.Brotli, "br")
            : accept.Contains("gzip", StringComparison.OrdinalIgnoreCase) ? (asset.Gzip, "gzip")
            : (asset.Bytes, null);
        if (encoding is not null)
        {
            headers.ContentEncoding = encoding;
        }

        response.ContentLength = body.Length;
        written = HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : response.Body.WriteAsync(body).AsTask();
        return true;
    }

    private static string ContentType(string file) => Path.GetExtension(file) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        _ => "application/octet-stream",
    };

    private static byte[] Compress(byte[] bytes, Func<Stream, Stream> compressor)
    {
        using var memory = new MemoryStream();
        using (var stream = compressor(memory))
        {
            stream.Write(bytes);
        }

        return memory.ToArray();
    }

    private sealed record Asset(string ContentType, string ETag, byte[] Bytes, byte[] Brotli, byte[] Gzip);
}
