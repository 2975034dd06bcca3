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
}
