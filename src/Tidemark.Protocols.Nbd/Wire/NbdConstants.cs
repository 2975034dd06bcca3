namespace Tidemark.Protocols.Nbd.Wire;

// Values from proto.md, section "Values". All integers on the wire are big-endian.

/// <summary>Magic numbers (proto.md "Newstyle negotiation", "Request message", "Simple reply message").</summary>
public static class NbdMagic
{
    /// <summary>ASCII "NBDMAGIC", first 8 bytes the server sends.</summary>
    public const ulong InitPassword = 0x4e42444d41474943;

    /// <summary>ASCII "IHAVEOPT": follows NBDMAGIC in newstyle and starts every option request.</summary>
    public const ulong IHaveOpt = 0x49484156454F5054;

    /// <summary>Starts every option reply in fixed newstyle.</summary>
    public const ulong OptionReply = 0x3e889045565a9;

    public const uint Request = 0x25609513;

    public const uint SimpleReply = 0x67446698;

    public const uint StructuredReply = 0x668e33ef;
}

/// <summary>proto.md "Handshake flags" (16 bits, sent by the server).</summary>
[Flags]
public enum NbdHandshakeFlags : ushort
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>proto.md "Client flags" (32 bits, sent by the client).</summary>
[Flags]
public enum NbdClientFlags : uint
{
    None = 0,
    FixedNewstyle = 1 << 0,
    NoZeroes = 1 << 1,
}

/// <summary>proto.md "Transmission flags" (16 bits).</summary>
[Flags]
public enum NbdTransmissionFlags : ushort
{
    None = 0,
    HasFlags = 1 << 0,
    ReadOnly = 1 << 1,
    SendFlush = 1 << 2,
    SendFua = 1 << 3,
    Rotational = 1 << 4,
    SendTrim = 1 << 5,
    SendWriteZeroes = 1 << 6,
    SendDf = 1 << 7,
    CanMultiConn = 1 << 8,
    SendResize = 1 << 9,
    SendCache = 1 << 10,
    SendFastZero = 1 << 11,
}

/// <summary>proto.md "Option types".</summary>
public enum NbdOptionType : uint
{
    None = 0,
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4,
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
}

/// <summary>proto.md "Option reply types"; errors have bit 31 set.</summary>
public enum NbdOptionReplyType : uint
{
    None = 0,
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrorUnsupported = 0x80000001,
    ErrorPolicy = 0x80000002,
    ErrorInvalid = 0x80000003,
    ErrorPlatform = 0x80000004,
    ErrorTlsRequired = 0x80000005,
    ErrorUnknown = 0x80000006,
    ErrorShutdown = 0x80000007,
    ErrorBlockSizeRequired = 0x80000008,
    ErrorTooBig = 0x80000009,
}

/// <summary>proto.md "NBD_REP_INFO" information types (16 bits).</summary>
public enum NbdInfoType : ushort
{
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
}

/// <summary>proto.md "Request types" (16 bits).</summary>
public enum NbdCommand : ushort
{
    Read = 0,
    Write = 1,
    Disconnect = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
}

/// <summary>proto.md "Command flags" (16 bits).</summary>
[Flags]
public enum NbdCommandFlags : ushort
{
    None = 0,
    Fua = 1 << 0,
    NoHole = 1 << 1,
    DontFragment = 1 << 2,
    RequestOne = 1 << 3,
    FastZero = 1 << 4,
}

/// <summary>proto.md "Structured reply flags" (16 bits).</summary>
[Flags]
public enum NbdReplyFlags : ushort
{
    None = 0,
    Done = 1 << 0,
}

/// <summary>proto.md "Structured reply types" (16 bits); error chunks have bit 15 set.</summary>
public enum NbdReplyType : ushort
{
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    Error = 0x8001,
    ErrorOffset = 0x8002,
}

/// <summary>proto.md "Error values": errno-like numbers, restricted to this set.</summary>
public enum NbdError : uint
{
    None = 0,
    NotPermitted = 1,
    IoError = 5,
    OutOfMemory = 12,
    InvalidArgument = 22,
    NoSpace = 28,
    Overflow = 75,
    NotSupported = 95,
    Shutdown = 108,
}

/// <summary>proto.md "base:allocation metadata context" status flags.</summary>
[Flags]
public enum NbdAllocationState : uint
{
    None = 0,
    Hole = 1 << 0,
    Zero = 1 << 1,
}
