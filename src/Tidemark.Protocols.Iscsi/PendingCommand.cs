using System.Buffers;

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

    /// <summary>Starts with a buffer for all the data (<paramref name="granted"/>) or only for the unsolicited part.</summary>
    public void Start(int expectedBytes, int unsolicitedEnd, bool granted)
    {
        ExpectedBytes = expectedBytes;
        UnsolicitedEnd = unsolicitedEnd;
        Granted = granted;
        Buffer = ArrayPool<byte>.Shared.Rent(granted ? expectedBytes : Math.Max(1, unsolicitedEnd));
        ReceivedBytes = 0;
        OutstandingR2T = 0;
        NextR2TSN = 0;
        ExpectedDataSN = 0;
        DataSequenceError = false;
    }

    /// <summary>Takes a buffer for all of the data, keeping what arrived unsolicited.</summary>
    public void Grant()
    {
        var whole = ArrayPool<byte>.Shared.Rent(ExpectedBytes);
        Buffer.AsSpan(0, UnsolicitedEnd).CopyTo(whole);
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
    }
}
