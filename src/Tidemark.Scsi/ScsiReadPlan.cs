namespace Tidemark.Scsi;

/// <summary>
/// What an admitted READ reads (<see cref="ScsiLogicalUnit.BeginRead"/>): <see cref="ReadBytes"/>
/// from <see cref="OffsetBytes"/> of the device (whole blocks), of which the first
/// <see cref="DataInBytes"/> go to the initiator; <see cref="TransferLengthBytes"/> is what the CDB
/// asked for (for the residual).
/// </summary>
public readonly record struct ScsiReadPlan(long OffsetBytes, int ReadBytes, int DataInBytes, long TransferLengthBytes);
