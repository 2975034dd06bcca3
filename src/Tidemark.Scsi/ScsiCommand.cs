namespace Tidemark.Scsi;

/// <summary>
/// One command as the transport hands it over: the CDB, the data-out buffer the initiator sent
/// (already collected, at most the expected transfer length), the data-in buffer to fill, and a
/// buffer for sense data (at least <see cref="SenseData.FixedFormatLengthBytes"/>). A transport that
/// has a WRITE's data still in its connection passes it as a <see cref="DataOutSource"/> instead.
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

    /// <summary>
    /// A command whose data-out is pulled from <paramref name="dataOutSource"/> (its
    /// <see cref="IPayloadSource.RemainingBytes"/> are the data-out's length): WRITE (6/10/12/16) and
    /// WRITE AND VERIFY let the device take it (<see cref="IBlockDevice.WriteFrom"/>, one copy into the
    /// store); every other command sees no data-out. Whatever the command leaves of the source (it was
    /// refused, or the device failed part-way) is the caller's to skip.
    /// </summary>
    public ScsiCommand(ReadOnlySpan<byte> cdb, IPayloadSource dataOutSource, Span<byte> sense)
    {
        ArgumentNullException.ThrowIfNull(dataOutSource);
        Cdb = cdb;
        DataOut = [];
        DataIn = [];
        Sense = sense;
        DataOutSource = dataOutSource;
    }

    public ReadOnlySpan<byte> Cdb { get; }

    public ReadOnlySpan<byte> DataOut { get; }

    /// <summary>The data-out as a source the device pulls (see the constructor), or null when it is <see cref="DataOut"/>.</summary>
    public IPayloadSource? DataOutSource { get; }

    /// <summary>Bytes of data-out the initiator sent: the source's, or <see cref="DataOut"/>'s.</summary>
    public int DataOutBytes => DataOutSource?.RemainingBytes ?? DataOut.Length;

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
