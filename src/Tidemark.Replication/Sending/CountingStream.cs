namespace Tidemark.Replication;

/// <summary>Counts what the HTTP client reads of the stream: the bytes on the wire (before TLS).</summary>
internal sealed class CountingStream(Stream inner, WireCounter wire) : ReadOnlyWrapperStream(inner)
{
    public override int Read(byte[] buffer, int offset, int count) => Counted(Inner.Read(buffer, offset, count));

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        Counted(await Inner.ReadAsync(buffer, cancellationToken));

    private int Counted(int n)
    {
        BytesRead += n;
        wire.Add(n);
        return n;
    }
}
