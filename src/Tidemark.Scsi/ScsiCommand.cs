namespace Tidemark.Scsi;

/// <summary>
/// One command as the transport hands it over: the CDB, the data-out buffer the initiator sent
/// (already collected, at most the expected transfer length), the data-in buffer to fill, and a
/// buffer for sense data (at least <see cref="SenseData.FixedFormatLengthBytes"/>).
/// </summary>
public readonly ref struct ScsiCommand
{
    public ScsiCommand(ReadOnlySpan<byte> cdb, ReadOnlySpan<byte> dataOut, Span<byte> dataIn, Span<byte> sense)
    {
        Cdb = cdb;
        DataOut = dataOut;
        DataIn = dataIn;
        Sense = sense;
    }

    public ReadOnlySpan<byte> Cdb { get; }

    public ReadOnlySpan<byte> DataOut { get; }

    public Span<byte> DataIn { get; }

    public Span<byte> Sense { get; }

    public byte Opcode => Cdb.IsEmpty ? (byte)0xFF : Cdb[0];

    public ScsiResult Fail(in SenseData sense, long transferLengthBytes = 0)
    {
        var n = sense.WriteFixedTo(Sense);
        return new ScsiResult(ScsiStatus.CheckCondition, 0, n, transferLengthBytes);
    }

    public static ScsiResult Good(int dataInBytes = 0, long transferLengthBytes = 0) =>
        new(ScsiStatus.Good, dataInBytes, 0, transferLengthBytes);

    /// <summary>
    /// Returns parameter data truncated to the CDB's ALLOCATION LENGTH (SPC-4 4.2.5.6) and to the
    /// data-in buffer; the transfer length is what the allocation length lets through.
    /// </summary>
    public ScsiResult ReturnData(ReadOnlySpan<byte> payload, int allocationLength)
    {
        var wanted = Math.Min(payload.Length, allocationLength);
        var n = Math.Min(wanted, DataIn.Length);
        payload[..n].CopyTo(DataIn);
        return new ScsiResult(ScsiStatus.Good, n, 0, wanted);
    }
}
