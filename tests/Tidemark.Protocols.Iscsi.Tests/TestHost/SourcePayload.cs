using System.Buffers;
using System.IO.Pipelines;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

/// <summary>
/// A payload feature over an in-memory pipe that offers payload sources, as the server's socket
/// transport does (there they splice; here <see cref="IPayloadSource.Fill"/> takes the bytes out of
/// the pipe, waiting for them on the connection's thread as a blocking receive would). It isolates the
/// protocol's source path from the transport; Tidemark.Server.Tests drive the real one.
/// </summary>
internal sealed class SourcePayload(PipeReader input) : IPayloadFeature
{
    private readonly PipePayload _memory = new(input);
    private int _opened;
    private long _openedBytes;

    /// <summary>False makes <see cref="OpenSource"/> return null although sources are offered (the transport found no pipe).</summary>
    public bool GivesSources { get; init; } = true;

    /// <summary>The most one source stages (a transport whose pipe is smaller than the segment); unlimited when 0.</summary>
    public int MaxSourceBytes { get; init; }

    /// <summary>Sources opened so far.</summary>
    public int Opened => Volatile.Read(ref _opened);

    /// <summary>Bytes of the sources opened so far.</summary>
    public long OpenedBytes => Interlocked.Read(ref _openedBytes);

    public bool OffersSource => true;

    public ValueTask ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken) => _memory.ReceiveAsync(destination, cancellationToken);

    public IPayloadSource? OpenSource(int lengthBytes)
    {
        if (!GivesSources)
        {
            return null;
        }

        var bytes = MaxSourceBytes > 0 ? Math.Min(lengthBytes, MaxSourceBytes) : lengthBytes;
        Interlocked.Increment(ref _opened);
        Interlocked.Add(ref _openedBytes, bytes);
        return new Source(input, bytes);
    }

    private sealed class Source(PipeReader input, int lengthBytes) : IPayloadSource
    {
        public int RemainingBytes { get; private set; } = lengthBytes;

        public void Fill(Span<byte> destination)
        {
            if (destination.Length > RemainingBytes)
            {
                throw new ArgumentOutOfRangeException(nameof(destination), "more than the payload has left");
            }

            var deadline = Environment.TickCount64 + 10_000;
            while (!destination.IsEmpty)
            {
                if (input.TryRead(out var result))
                {
                    if (!result.Buffer.IsEmpty)
                    {
                        var take = (int)Math.Min(result.Buffer.Length, destination.Length);
                        result.Buffer.Slice(0, take).CopyTo(destination);
                        input.AdvanceTo(result.Buffer.GetPosition(take));
                        destination = destination[take..];
                        RemainingBytes -= take;
                        continue;
                    }

                    input.AdvanceTo(result.Buffer.Start);
                    if (result.IsCompleted)
                    {
                        throw new PayloadSourceException("the peer closed in the middle of a payload", new EndOfStreamException());
                    }
                }

                if (Environment.TickCount64 > deadline)
                {
                    throw new PayloadSourceException("the test peer sent nothing for 10 s");
                }

                Thread.Sleep(1); // the test's writer runs on the pool: wait for it as a blocking receive would
            }
        }
    }
}
