using System.IO.Pipelines;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

/// <summary>An <see cref="IDuplexPipe"/> made of a reader and a writer.</summary>
internal sealed record DuplexPipe(PipeReader Input, PipeWriter Output) : IDuplexPipe
{
    /// <summary>Two connected ends: what the client writes the server reads, and back.</summary>
    public static (DuplexPipe Server, DuplexPipe Client) CreatePair(PipeOptions? clientToServer = null, PipeOptions? serverToClient = null)
    {
        var up = new Pipe(clientToServer ?? Unbounded);
        var down = new Pipe(serverToClient ?? Unbounded);
        return (new DuplexPipe(up.Reader, down.Writer), new DuplexPipe(down.Reader, up.Writer));
    }

    /// <summary>No back-pressure: a test may send a whole session before reading any reply.</summary>
    public static PipeOptions Unbounded { get; } = new(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false);
}
