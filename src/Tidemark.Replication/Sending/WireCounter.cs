namespace Tidemark.Replication;

/// <summary>One sync's bytes on the wire, every attempt (a failed one used the link too): what the replica's total counts.</summary>
internal sealed class WireCounter
{
    private long _bytes;

    public long Bytes => Interlocked.Read(ref _bytes);

    public void Add(long bytes) => Interlocked.Add(ref _bytes, bytes);
}
