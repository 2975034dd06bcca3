namespace Tidemark.Scsi;

/// <summary>
/// The outcome of one command. <see cref="DataInBytes"/> bytes of the data-in buffer are valid;
/// <see cref="SenseBytes"/> bytes of the sense buffer are valid (CHECK CONDITION only).
/// <see cref="TransferLengthBytes"/> is what the CDB itself asked to move (the SCSI transfer length,
/// SPDTL in iSCSI terms); the transport compares it with the initiator's expected length to report
/// residual overflow or underflow (RFC 7143 11.4.5.1).
/// </summary>
public readonly record struct ScsiResult(ScsiStatus Status, int DataInBytes, int SenseBytes, long TransferLengthBytes)
{
    public bool IsGood => Status == ScsiStatus.Good;
}
