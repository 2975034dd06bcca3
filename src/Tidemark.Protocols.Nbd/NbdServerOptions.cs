using System.IO.Pipelines;

namespace Tidemark.Protocols.Nbd;

/// <summary>
/// Caps on everything a client controls, checked before anything is allocated, plus the hooks a host
/// plugs in. One instance is shared by every connection of a listener.
/// </summary>
public sealed record NbdServerOptions
{
    public static NbdServerOptions Default { get; } = new();

    /// <summary>
    /// Largest READ or WRITE payload. proto.md "Size constraints": payloads up to 2^25 bytes SHOULD NOT
    /// be treated as denial of service, so we accept exactly that and advertise it as maximum payload.
    /// A WRITE beyond it cannot be skipped cheaply, so it ends the connection; a READ beyond it gets EINVAL.
    /// </summary>
    public int MaxPayloadBytes { get; init; } = 32 * 1024 * 1024;

    /// <summary>
    /// Largest option data in the handshake. The biggest legitimate option is SET/LIST_META_CONTEXT:
    /// a 4096-byte name (proto.md "Conventions": strings MUST be no longer than 4096 bytes) plus a few
    /// queries. 64 KiB leaves room for many queries while bounding what one client can make us buffer.
    /// </summary>
    public int MaxOptionDataBytes { get; init; } = 64 * 1024;

    /// <summary>
    /// Options accepted before transmission. proto.md "Termination of the session": a server MAY hard
    /// disconnect a client whose behaviour looks like denial of service; nbdinfo --list sends one
    /// NBD_OPT_INFO per export, so the cap must exceed any realistic export count.
    /// </summary>
    public int MaxOptionsPerConnection { get; init; } = 16 * 1024;

    /// <summary>
    /// Most meta-context queries in one option; each is matched by string comparison, so this bounds
    /// the work of one option (proto.md allows NBD_REP_ERR_TOO_BIG beyond it).
    /// </summary>
    public int MaxMetaContextQueries { get; init; } = 128;

    /// <summary>
    /// Most extents in one NBD_REPLY_TYPE_BLOCK_STATUS chunk. proto.md says SHOULD NOT exceed 2^20;
    /// we stay far below so a block-status reply (8 bytes per extent) stays small, and clients
    /// continue after the last extent as the spec anticipates.
    /// </summary>
    public int MaxBlockStatusExtents { get; init; } = 4096;

    /// <summary>
    /// Replies queued but not yet sent before we flush in the middle of a batch: batching small replies
    /// saves syscalls (DESIGN.md, data-path performance), and a large read reply leaves at once, while
    /// its data is still in the CPU's cache (1 MiB reads: 4 MiB here measured 10-20% slower, see
    /// docs/BENCHMARKS.md NBD run 5).
    /// </summary>
    public int MaxUnflushedReplyBytes { get; init; } = 256 * 1024;

    /// <summary>
    /// The largest piece of a WRITE payload held in memory at once: a larger WRITE is received and
    /// written to the device in pieces of this size (whole 4 KiB pages), so a 32 MiB WRITE does not make
    /// a connection hold 32 MiB.
    /// </summary>
    public int WriteChunkBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>
    /// Payload bytes a connection may have queued for its write worker, which applies and answers
    /// WRITEs while the connection thread receives the next requests (see NbdConnection.Writes.cs);
    /// beyond it the connection thread waits. 0 applies every WRITE on the connection thread.
    /// </summary>
    public int WriteBehindBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>
    /// READs of one connection in flight at once, at most, on a device that serves several at once
    /// well (<see cref="IBlockDevice.PreferredConcurrency"/> above 1: a RADOS-backed volume, whose reads
    /// are network round trips; issue 22) and never more than the device prefers. 32 is the queue depth
    /// fio and the kernel client use and what an RBD image was measured at. 1 or less handles every
    /// READ inline, as on a local store, where a page-cache read is faster than any hand-off.
    /// </summary>
    public int MaxReadsInFlight { get; init; } = 32;

    /// <summary>
    /// Bytes the READs in flight of one connection may hold in their buffers together: beyond it the
    /// connection stops reading requests until a read was answered, so a client cannot make us hold
    /// MaxReadsInFlight times MaxPayloadBytes. A READ larger than this is handled inline, after the
    /// earlier ones were answered. 32 MiB, as iSCSI's: a client's 32 reads of 1 MiB all wait on the
    /// cluster at once, as RBD's client has them (8 MiB held 1 MiB reads at QD32 to 0.74-0.78x RBD,
    /// 32 MiB 0.80-0.85x; docs/BENCHMARKS.md, session 22).
    /// </summary>
    public long MaxReadBytesInFlight { get; init; } = 32 * 1024 * 1024;

    /// <summary>
    /// Upgrades the transport after NBD_OPT_STARTTLS was acknowledged (proto.md "TLS support"); the
    /// host wraps the pipe in an SslStream and returns the decrypted pipe. Null: STARTTLS is answered
    /// NBD_REP_ERR_UNSUP.
    /// </summary>
    public Func<IDuplexPipe, CancellationToken, ValueTask<IDuplexPipe>>? StartTls { get; init; }
}
