using System.Buffers;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// A write command waiting for its Data-Out PDUs (RFC 7143 10.7-10.8). Instances are pooled per
/// connection and reused; the data buffer is rented from the shared array pool and returned by
/// <see cref="Reset"/> (the connection owns both).
/// </summary>
internal sealed class PendingCommand
{
    /// <summary>RFC 7143 11.3.5: a CDB longer than 16 bytes continues in an extended-CDB AHS (at most 260 bytes in all).</summary>
    public const int MaxCdbBytes = 260;

    public byte[] Cdb { get; } = new byte[MaxCdbBytes];

    public int CdbLength { get; set; }

    public uint InitiatorTaskTag { get; set; }

    public ulong LunField { get; set; }

    public uint CmdSN { get; set; }

    public bool Read { get; set; }

    public byte[]? Buffer { get; private set; }

    public int ExpectedBytes { get; private set; }

    public int ReceivedBytes { get; set; }

    /// <summary>End of the unsolicited range (immediate data plus unsolicited Data-Out, FirstBurstLength).</summary>
    public int UnsolicitedEnd { get; set; }

    /// <summary>Next offset an R2T will ask for.</summary>
    public int NextR2TOffset { get; set; }

    public int OutstandingR2T { get; set; }

    public uint NextR2TSN { get; set; }

    public uint TargetTransferTag { get; set; }

    /// <summary>RFC 7143 11.7.4: DataSN of the next Data-Out, from 0 in each sequence (unsolicited or per R2T).</summary>
    public uint ExpectedDataSN { get; set; }

    /// <summary>A Data-Out arrived out of DataSN order: the task ends with CHECK CONDITION once its data is in.</summary>
    public bool DataSequenceError { get; set; }

    /// <summary>
    /// True once the command holds a buffer for all of its data and may be sent R2Ts; until then it
    /// holds only its unsolicited part (the session's write budget was spent, IscsiLimits.MaxBufferedWriteBytes).
    /// </summary>
    public bool Granted { get; private set; }

    /// <summary>
    /// Set for a plain WRITE applied in pieces as its data arrives (IscsiConnection.WritePieces.cs):
    /// the buffer holds one piece, the bytes from <see cref="PieceStart"/>.
    /// </summary>
    public bool Streamed { get; private set; }

    /// <summary>Bytes of the buffer once granted: a piece when streamed, else all the data (what the write budget counts).</summary>
    public int GrantBytes { get; private set; }

    /// <summary>Command offset of the buffer's first byte (0 unless streamed).</summary>
    public int PieceStart { get; set; }

    /// <summary>True once the whole command's checks ran on the logical unit (before its first piece).</summary>
    public bool Checked { get; set; }

    /// <summary>A streamed WRITE's failure (a piece or its checks), sent as its status once its data is in.</summary>
    public ScsiFailure? Failure { get; set; }

    /// <summary>What a streamed WRITE reports when every piece went well (the checks' result: transfer length for the residual).</summary>
    public long TransferLengthBytes { get; set; }

    /// <summary>
    /// Starts with a buffer for all the data (or for one piece of it when <paramref name="pieceBytes"/>
    /// is positive) when <paramref name="granted"/>, else only for the unsolicited part.
    /// </summary>
    public void Start(int expectedBytes, int unsolicitedEnd, bool granted, int pieceBytes = 0)
    {
        ExpectedBytes = expectedBytes;
        UnsolicitedEnd = unsolicitedEnd;
        Streamed = pieceBytes > 0;
        GrantBytes = Streamed ? pieceBytes : expectedBytes;
        Granted = granted;
        Buffer = ArrayPool<byte>.Shared.Rent(granted ? GrantBytes : Math.Max(1, unsolicitedEnd));
        ReceivedBytes = 0;
        OutstandingR2T = 0;
        NextR2TSN = 0;
        ExpectedDataSN = 0;
        DataSequenceError = false;
        PieceStart = 0;
        Checked = false;
        Failure = null;
        TransferLengthBytes = 0;
    }

    /// <summary>Takes a buffer for all of the data (a piece when streamed), keeping what arrived unsolicited.</summary>
    public void Grant()
    {
        var whole = ArrayPool<byte>.Shared.Rent(GrantBytes);
        var kept = Streamed ? ReceivedBytes - PieceStart : UnsolicitedEnd;
        Buffer.AsSpan(0, kept).CopyTo(whole);
        ArrayPool<byte>.Shared.Return(Buffer!);
        Buffer = whole;
        Granted = true;
    }

    public void Reset()
    {
        if (Buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(Buffer);
            Buffer = null;
        }

        ExpectedBytes = 0;
        Granted = false;
        Failure = null;
    }
}

/// <summary>A SCSI status with its own copy of the sense data (the connection's sense buffer is reused by every command).</summary>
internal sealed record ScsiFailure(ScsiStatus Status, byte[] Sense, long TransferLengthBytes);
