using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;

namespace Tidemark;

/// <summary>
/// How a protocol takes a large payload (an NBD WRITE's data, an iSCSI WRITE's data segments) from its
/// connection without reading the socket itself: after the protocol has advanced its input reader past
/// the request header, <see cref="ReceiveAsync"/> delivers the next bytes of the input, first what the
/// reader already holds, then the rest. The transport behind the connection chooses how (straight from
/// the socket into <paramref name="destination"/>, or through the pipe when TLS decrypts it), so the
/// protocol has one code path whatever the transport (docs/adr/0010-protocol-transport.md).
/// </summary>
public interface IPayloadFeature
{
    /// <summary>
    /// Fills <paramref name="destination"/> with the next bytes of the connection's input. Call it only
    /// between reads: after <see cref="PipeReader.AdvanceTo(SequencePosition)"/> and before the next
    /// ReadAsync. Throws <see cref="EndOfStreamException"/> when the peer closes first.
    /// </summary>
    ValueTask ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken);

    /// <summary>
    /// The next bytes of the input, at most <paramref name="lengthBytes"/>, as a source a device pulls
    /// from itself (<see cref="IBlockDevice.WriteFrom"/>); its <see cref="IPayloadSource.RemainingBytes"/>
    /// says how many (the transport may take fewer: what it can stage at once, a multiple of 4 KiB when
    /// fewer). Null when the transport has no better way than <see cref="ReceiveAsync"/> (TLS, an
    /// in-memory pipe). Same rule as ReceiveAsync: call it only between reads, and read again only once
    /// the source was consumed or skipped (<see cref="IPayloadSource.Skip"/>). Opening and the source's
    /// calls block the caller's thread until the bytes are there, within the payload's deadline.
    /// </summary>
    IPayloadSource? OpenSource(int lengthBytes) => null;

    /// <summary>
    /// True when <see cref="OpenSource"/> is likely to give a source now (a plain TCP transport in its
    /// data phase): a protocol that chooses a path for a whole command by it (iSCSI's WRITE, whose data
    /// comes in several segments) knows before the first segment. A hint only: OpenSource may still
    /// return null (no pipe to be had), and the protocol then takes that segment through memory.
    /// </summary>
    bool OffersSource => false;
}

/// <summary>
/// The payload feature of a connection whose transport offers none (TLS, an in-memory pipe in a
/// test): the payload is copied out of the connection's <see cref="PipeReader"/>.
/// </summary>
public sealed class PipePayload(PipeReader input) : IPayloadFeature
{
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))] // no allocation per payload that waits
    public async ValueTask ReceiveAsync(Memory<byte> destination, CancellationToken cancellationToken)
    {
        while (!destination.IsEmpty)
        {
            var result = await input.ReadAsync(cancellationToken);
            if (result.IsCanceled)
            {
                throw new OperationCanceledException("the read was cancelled");
            }

            var buffer = result.Buffer;
            var take = (int)Math.Min(buffer.Length, destination.Length);
            buffer.Slice(0, take).CopyTo(destination.Span);
            destination = destination[take..];
            input.AdvanceTo(buffer.GetPosition(take));
            if (!destination.IsEmpty && result.IsCompleted)
            {
                throw new EndOfStreamException("the peer closed in the middle of a payload");
            }
        }
    }
}
