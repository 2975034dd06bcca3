namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// Every length the target accepts from the wire, capped before anything is allocated, and the
/// values it offers in login negotiation (CONVENTIONS.md habit 6).
/// </summary>
public sealed record IscsiLimits
{
    /// <summary>
    /// Our MaxRecvDataSegmentLength (RFC 7143 13.12), and the cap on any incoming data segment once
    /// in full feature phase. 1 MiB (MaxBurstLength): a large WRITE's solicited data comes as one
    /// Data-Out per R2T, which the payload source writes to the store in one piece where 256 KiB
    /// made four (a 1 MiB WRITE: 256 KiB of immediate data and one 768 KiB Data-Out). Measured
    /// quietly against 256 KiB, alternating: 1.06x the 1 MiB write row at less CPU per I/O, ahead in
    /// every repetition (docs/BENCHMARKS.md, "Session 23"). A segment is received into memory only
    /// where the source is not offered (TLS, a data digest): one pooled piece per connection at a time.
    /// </summary>
    public int MaxRecvDataSegmentBytes { get; init; } = 1024 * 1024;

    /// <summary>RFC 7143 6.1: login and text PDUs carry at most 8192 bytes of data before MaxRecvDataSegmentLength is negotiated.</summary>
    public int LoginDataSegmentBytes { get; init; } = 8192;

    /// <summary>A whole login or text exchange spread over continuation PDUs; key=value text is small, this stops unbounded growth.</summary>
    public int MaxTextBytes { get; init; } = 64 * 1024;

    /// <summary>Largest data segment we send (Data-In, text); the initiator's MaxRecvDataSegmentLength may lower it.</summary>
    public int MaxSendDataSegmentBytes { get; init; } = 256 * 1024;

    /// <summary>
    /// Largest ExpectedDataTransferLength of one command. A plain WRITE larger than
    /// <see cref="WritePieceBytes"/> is applied in pieces as its data arrives; any other command's
    /// data is buffered whole before the logical unit runs it, so this bounds memory per outstanding command.
    /// </summary>
    public int MaxCommandDataBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>
    /// A WRITE (6/10/12/16) with more data than this is written to the device in pieces of this size
    /// as its Data-Out arrives, so it holds one piece, not its whole data (issue 18). Smaller
    /// commands are buffered whole and run once, as before (the 1 MiB write of the benchmarks is one
    /// device write either way).
    /// </summary>
    public int WritePieceBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// Bytes of write data one connection may hold buffered for commands waiting for their Data-Out.
    /// A WRITE is sent its R2Ts (and given a buffer for all its data) only while the connection holds
    /// less; the others wait with just their unsolicited data (at most FirstBurstLength each), so a
    /// session that sends 64 WRITEs of 8 MiB and no data holds about this much, not 512 MiB. One
    /// command is always admitted, so this never blocks progress even below <see cref="MaxCommandDataBytes"/>.
    /// </summary>
    public int MaxBufferedWriteBytes { get; init; } = 16 * 1024 * 1024;

    /// <summary>
    /// READs one connection keeps in flight on a unit whose device serves many at once
    /// (<see cref="IBlockDevice.PreferredConcurrency"/> above 1: a RADOS-backed volume), lowered to the
    /// device's preference; 1 or less turns the asynchronous read path off (ADR 0021, iSCSI). At the cap
    /// the connection stops reading PDUs until a READ was answered. Mirrors NBD's MaxReadsInFlight.
    /// </summary>
    public int MaxReadsInFlight { get; init; } = 32;

    /// <summary>
    /// Bytes of READ buffers one connection holds for READs in flight (each holds its data until its
    /// Data-In is written): 32 MiB lets an initiator's 32 reads of 1 MiB all wait on the cluster at once,
    /// as RBD's client has them (16 MiB held 1 MiB reads at QD32 to 0.71x RBD, docs/BENCHMARKS.md). A READ
    /// with a larger expected length takes the synchronous path; one READ is always admitted.
    /// </summary>
    public long MaxReadBytesInFlight { get; init; } = 32 * 1024 * 1024;

    /// <summary>Commands the initiator may have outstanding (MaxCmdSN - ExpCmdSN + 1, RFC 7143 4.2.2.1); bounds buffered writes per connection.</summary>
    public int CommandWindow { get; init; } = 64;

    /// <summary>Offered MaxBurstLength (RFC 7143 13.13): bytes one R2T may ask for.</summary>
    public int MaxBurstBytes { get; init; } = 1024 * 1024;

    /// <summary>Offered FirstBurstLength (RFC 7143 13.14): unsolicited bytes (immediate plus Data-Out) per command.</summary>
    public int FirstBurstBytes { get; init; } = 256 * 1024;

    /// <summary>Offered MaxOutstandingR2T (RFC 7143 13.17).</summary>
    public int MaxOutstandingR2T { get; init; } = 4;

    /// <summary>Offered ImmediateData and InitialR2T (RFC 7143 13.10, 13.11).</summary>
    public bool ImmediateData { get; init; } = true;

    public bool InitialR2T { get; init; }

    /// <summary>Digests the target accepts; CRC32C costs CPU on every byte, so an operator may refuse it.</summary>
    public bool AllowDigests { get; init; } = true;

    /// <summary>
    /// Replies queued before the loop stops parsing and flushes. Replies are batched into one write, but
    /// a batch of large reads must not buffer hundreds of MiB before the first byte goes out.
    /// </summary>
    public int MaxQueuedOutputBytes { get; init; } = 1024 * 1024;

    /// <summary>
    /// How long a connection ended by a protocol error keeps reading (and discarding) before it closes,
    /// so the initiator sees the Reject and a clean close rather than a TCP reset.
    /// </summary>
    public TimeSpan ProtocolErrorLinger { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// Keepalive (RFC 7143 11.19): after this long without a PDU from the initiator in full feature
    /// phase, the target sends a NOP-In asking for a NOP-Out. Zero disables the pings.
    /// </summary>
    public TimeSpan NopInInterval { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// A connection whose initiator sends nothing at all for this long after a ping is taken to be
    /// dead and closed, so its session (and any reservation it holds) does not linger.
    /// </summary>
    public TimeSpan NopInTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>AHS bytes accepted (RFC 7143 11.2.1.5; extended CDBs need at most 260).</summary>
    public int MaxAhsBytes { get; init; } = 512;

    /// <summary>Portal group tag reported to initiators (RFC 7143 13.9).</summary>
    public ushort TargetPortalGroupTag { get; init; } = 1;
}
