namespace Tidemark.Scsi;

/// <summary>Identity strings and limits a logical unit reports in INQUIRY and the Block Limits VPD page.</summary>
public sealed record ScsiLogicalUnitOptions
{
    /// <summary>SPC-4 T10 VENDOR IDENTIFICATION: 8 ASCII characters.</summary>
    public string VendorId { get; init; } = "TIDEMARK";

    /// <summary>SPC-4 PRODUCT IDENTIFICATION: 16 ASCII characters.</summary>
    public string ProductId { get; init; } = "VOLUME";

    /// <summary>SPC-4 PRODUCT REVISION LEVEL: 4 ASCII characters.</summary>
    public string ProductRevision { get; init; } = "0001";

    /// <summary>Largest READ/WRITE the unit accepts, in bytes; the transport buffers one command's data, so this bounds memory per connection.</summary>
    public int MaxTransferBytes { get; init; } = 8 * 1024 * 1024;

    /// <summary>Largest UNMAP / WRITE SAME range in one command; bounds the time one command holds the connection loop.</summary>
    public long MaxUnmapBytes { get; init; } = 1L << 30;

    /// <summary>UNMAP block descriptors per command (SBC-3 6.6.4); bounds the parameter list.</summary>
    public int MaxUnmapDescriptors { get; init; } = 256;

    /// <summary>COMPARE AND WRITE blocks per command (the field is one byte in the CDB).</summary>
    public int MaxCompareAndWriteBlocks { get; init; } = 128;

    /// <summary>
    /// How long GET LBA STATUS keeps asking the device for further stretches after the first, so one
    /// command does not hold the connection loop for long: the engine answers 256 MiB per call, a
    /// deallocated 4 GiB took 13 ms in all, but a range never written costs about 0.25 s per call
    /// under load (16 GiB never written took 18 s without this bound). SBC lets the reply stop early;
    /// the initiator asks again from where it ends.
    /// </summary>
    public TimeSpan LbaStatusScanTime { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// EXTENDED COPY: CSCD descriptors per command. A copy names a source and a destination; 16 lets
    /// an initiator gather several units in one list while the list stays small to walk.
    /// </summary>
    public int MaxCopyTargetDescriptors { get; init; } = 16;

    /// <summary>EXTENDED COPY: segment descriptors per command; with <see cref="MaxCopyBytes"/> it bounds one command.</summary>
    public int MaxCopySegmentDescriptors { get; init; } = 64;

    /// <summary>EXTENDED COPY: MAXIMUM DESCRIPTOR LIST LENGTH (bytes of CSCD and segment descriptors together), so the parameter list is bounded before it is walked.</summary>
    public int MaxCopyDescriptorListBytes { get; init; } = 4096;

    /// <summary>
    /// EXTENDED COPY: bytes one command may copy in all its segments, also the MAXIMUM SEGMENT LENGTH
    /// reported. The copy moves the data inside the server on the connection loop, so it bounds how
    /// long one command holds that loop: 1 GiB took 11 s at load average 50 on this machine, 256 MiB
    /// stays near a few seconds. A hypervisor splits a clone into many commands anyway (VMware
    /// sends 4 MiB by default).
    /// </summary>
    public long MaxCopyBytes { get; init; } = 256L << 20;
}
