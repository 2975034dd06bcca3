using System.Buffers.Binary;

namespace Tidemark.Scsi;

/// <summary>
/// An SBC-3 direct-access logical unit over an <see cref="IBlockDevice"/>: executes one CDB with
/// its data buffers and produces status and sense. Transport-independent and thread-safe: several
/// sessions may execute on one unit at once; per-initiator state lives in <see cref="ScsiNexus"/>.
/// Commands run synchronously on the caller's thread (DESIGN.md, data-path performance).
/// </summary>
public sealed partial class ScsiLogicalUnit : IDisposable
{
    private readonly ScsiLogicalUnitOptions _options;
    private readonly bool _readOnly;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _nexusKeys = new(StringComparer.Ordinal);
    private long _nextNexusKey;
    private int _resetGeneration;
    private int _targetResetGeneration;
    private int _capacityGeneration;

    public ScsiLogicalUnit(IBlockDevice device, bool readOnly = false, ScsiLogicalUnitOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(device);
        Device = device;
        _readOnly = readOnly || device.IsReadOnly;
        _options = options ?? new ScsiLogicalUnitOptions();
        Device.SizeChanged += OnSizeChanged;
    }

    public IBlockDevice Device { get; }

    /// <summary>True when writes are refused with DATA PROTECT / WRITE PROTECTED.</summary>
    public bool IsReadOnly => _readOnly || Device.IsReadOnly;

    internal int ResetGeneration => Volatile.Read(ref _resetGeneration);

    internal int TargetResetGeneration => Volatile.Read(ref _targetResetGeneration);

    internal int CapacityGeneration => Volatile.Read(ref _capacityGeneration);

    private int BlockBytes => Device.LogicalBlockSizeBytes;

    private long CapacityBlocks => Device.SizeBytes / Device.LogicalBlockSizeBytes;

    /// <summary>
    /// Opens the state of one I_T nexus. <paramref name="initiatorPort"/> names the initiator port (for
    /// iSCSI "iqn...,i,0xISID", SPC-4 7.6.4.6); the same name gets the same identity again, so
    /// persistent reservations survive a re-login. Null gives a fresh anonymous nexus.
    /// </summary>
    public ScsiNexus OpenNexus(string? initiatorPort = null)
    {
        var port = initiatorPort ?? $"anonymous-{Interlocked.Increment(ref _nextNexusKey)}";
        var key = _nexusKeys.GetOrAdd(port, _ => Interlocked.Increment(ref _nextNexusKey) + (1L << 40));
        return new ScsiNexus(this, key, port);
    }

    /// <summary>The nexus is gone (logout, connection loss): its reservation is released (SPC-2 5.5.1).</summary>
    public void CloseNexus(ScsiNexus nexus)
    {
        ArgumentNullException.ThrowIfNull(nexus);
        ReleaseReservation(nexus.Key);
    }

    /// <summary>LOGICAL UNIT RESET (SAM-5 6.6): clears reservations; every nexus then sees 29h/03h once.</summary>
    public void Reset()
    {
        ClearReservation();
        Interlocked.Increment(ref _resetGeneration);
    }

    /// <summary>TARGET WARM RESET: as a unit reset, reported as 29h/02h.</summary>
    public void TargetReset()
    {
        ClearReservation();
        Interlocked.Increment(ref _targetResetGeneration);
    }

    public void Dispose() => Device.SizeChanged -= OnSizeChanged;

    private void OnSizeChanged(object? sender, EventArgs e) => Interlocked.Increment(ref _capacityGeneration);

    public ScsiResult Execute(ScsiNexus nexus, in ScsiCommand command)
    {
        ArgumentNullException.ThrowIfNull(nexus);
        if (!TryAdmit(nexus, command, out var opcode, out var refused))
        {
            return refused;
        }

        try
        {
            return Dispatch(nexus, opcode, command);
        }
        catch (StorageException e)
        {
            return command.Fail(MapStorageError(e.Error, IsWriteOpcode(opcode)));
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    /// <summary>
    /// What every command goes through before it runs: the CDB's form, a pending unit attention,
    /// reservations and a SANITIZE under way. True when the command may run; it is then counted as
    /// running (SANITIZE waits for it) until the caller decrements <c>_inFlight</c>.
    /// </summary>
    private bool TryAdmit(ScsiNexus nexus, in ScsiCommand command, out byte opcode, out ScsiResult refused)
    {
        var cdb = command.Cdb;
        opcode = cdb.IsEmpty ? (byte)0 : cdb[0];
        var needed = cdb.IsEmpty ? 0 : ScsiOpcode.CdbLengthBytes(opcode);
        if (needed == 0 || cdb.Length < needed)
        {
            refused = command.Fail(SenseData.InvalidOpcode);
            return false;
        }

        // SAM-5 5.14: INQUIRY, REPORT LUNS and REQUEST SENSE never report a unit attention.
        if (opcode is not (ScsiOpcode.Inquiry or ScsiOpcode.ReportLuns or ScsiOpcode.RequestSense)
            && TryTakeUnitAttention(nexus, out var attention))
        {
            refused = command.Fail(attention);
            return false;
        }

        if ((IsReservedByOther(nexus.Key) && !AllowedUnderReservation(opcode)) || PersistentReservationConflict(nexus.Key, opcode))
        {
            refused = new ScsiResult(ScsiStatus.ReservationConflict, 0, 0, 0);
            return false;
        }

        // Counted so a SANITIZE can wait for the commands already running (see Sanitize).
        Interlocked.Increment(ref _inFlight);
        if (Sanitizing && !AllowedDuringSanitize(opcode))
        {
            Interlocked.Decrement(ref _inFlight);
            refused = command.Fail(SenseData.SanitizeInProgress);
            return false;
        }

        refused = default;
        return true;
    }

    private ScsiResult Dispatch(ScsiNexus nexus, byte opcode, in ScsiCommand c) => opcode switch
    {
        ScsiOpcode.TestUnitReady => ScsiCommand.Good(),
        ScsiOpcode.RequestSense => RequestSense(nexus, c),
        ScsiOpcode.Inquiry => Inquiry(c),
        ScsiOpcode.Read6 or ScsiOpcode.Read10 or ScsiOpcode.Read12 or ScsiOpcode.Read16 => Read(c),
        ScsiOpcode.Write6 or ScsiOpcode.Write10 or ScsiOpcode.Write12 or ScsiOpcode.Write16
            or ScsiOpcode.WriteAndVerify10 or ScsiOpcode.WriteAndVerify12 or ScsiOpcode.WriteAndVerify16 => Write(c),
        ScsiOpcode.Verify10 or ScsiOpcode.Verify12 or ScsiOpcode.Verify16 => Verify(c),
        ScsiOpcode.PreFetch10 or ScsiOpcode.PreFetch16 => PreFetch(c),
        ScsiOpcode.SynchronizeCache10 or ScsiOpcode.SynchronizeCache16 => SynchronizeCache(c),
        ScsiOpcode.ReadCapacity10 => ReadCapacity10(c),
        ScsiOpcode.ServiceActionIn16 => ServiceActionIn16(c),
        ScsiOpcode.Unmap => Unmap(c),
        ScsiOpcode.WriteSame10 or ScsiOpcode.WriteSame16 => WriteSame(c),
        ScsiOpcode.CompareAndWrite => CompareAndWrite(c),
        ScsiOpcode.OrWrite16 => OrWrite(c),
        ScsiOpcode.WriteAtomic16 => WriteAtomic(c),
        ScsiOpcode.Sanitize => Sanitize(c),
        ScsiOpcode.ExtendedCopy => ThirdPartyCopyOut(nexus, c),
        ScsiOpcode.ReceiveCopyResults => ReceiveCopyResults(nexus, c),
        ScsiOpcode.ReadDefectData10 or ScsiOpcode.ReadDefectData12 => ReadDefectData(c),
        ScsiOpcode.ModeSense6 or ScsiOpcode.ModeSense10 => ModeSense(c),
        ScsiOpcode.ModeSelect6 or ScsiOpcode.ModeSelect10 => ModeSelect(nexus, c),
        ScsiOpcode.MaintenanceIn => MaintenanceIn(c),
        ScsiOpcode.StartStopUnit => StartStopUnit(c),
        ScsiOpcode.PreventAllowMediumRemoval => PreventAllow(c),
        ScsiOpcode.Reserve6 or ScsiOpcode.Reserve10 => Reserve(nexus, c),
        ScsiOpcode.Release6 or ScsiOpcode.Release10 => Release(nexus, c),
        ScsiOpcode.ReportLuns => ScsiTargetCommands.ReportLuns(c, [0]),
        PersistentReserveIn => PersistentReserveInCommand(c),
        PersistentReserveOut => PersistentReserveOutCommand(nexus, c),
        _ => c.Fail(SenseData.InvalidOpcode),
    };

    private bool TryTakeUnitAttention(ScsiNexus nexus, out SenseData sense)
    {
        // SAM-5 5.14: report the highest-priority pending condition once per nexus.
        var reset = ResetGeneration;
        var targetReset = TargetResetGeneration;
        var capacity = CapacityGeneration;
        if (nexus.SeenTargetResetGeneration != targetReset)
        {
            nexus.SeenTargetResetGeneration = targetReset;
            nexus.SeenResetGeneration = reset;
            sense = SenseData.TargetResetOccurred;
            return true;
        }

        if (nexus.SeenResetGeneration != reset)
        {
            nexus.SeenResetGeneration = reset;
            sense = SenseData.LogicalUnitResetOccurred;
            return true;
        }

        if (nexus.SeenCapacityGeneration != capacity)
        {
            nexus.SeenCapacityGeneration = capacity;
            sense = SenseData.CapacityDataChanged;
            return true;
        }

        var mode = ModeGeneration;
        if (nexus.SeenModeGeneration != mode)
        {
            nexus.SeenModeGeneration = mode;
            sense = SenseData.ModeParametersChanged;
            return true;
        }

        sense = default;
        return false;
    }

    private ScsiResult RequestSense(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-4 6.39: a pending unit attention is returned as parameter data and cleared.
        var allocation = c.Cdb[4];
        var sense = Sanitizing ? SenseData.SanitizeInProgress
            : TryTakeUnitAttention(nexus, out var attention) ? attention
            : SenseData.NoSense;
        Span<byte> buffer = stackalloc byte[SenseData.FixedFormatLengthBytes];
        if ((c.Cdb[1] & 0x01) != 0)
        {
            // DESC=1: descriptor format (SPC-4 4.5.2) with no descriptors.
            buffer.Clear();
            buffer[0] = 0x72;
            buffer[1] = (byte)sense.Key;
            buffer[2] = sense.AdditionalSenseCode;
            buffer[3] = sense.AdditionalSenseCodeQualifier;
            return c.ReturnData(buffer[..8], allocation);
        }

        sense.WriteFixedTo(buffer);
        return c.ReturnData(buffer, allocation);
    }

    private static ScsiResult StartStopUnit(in ScsiCommand c) => ScsiCommand.Good();

    private static ScsiResult PreventAllow(in ScsiCommand c) =>

        // SBC-3 5.13: PREVENT bits other than 00b/01b are obsolete/reserved for a non-removable medium.
        (c.Cdb[4] & 0x03) > 1 ? c.Fail(SenseData.InvalidFieldInCdb) : ScsiCommand.Good();

    internal static SenseData MapStorageError(StorageError error, bool write) => error switch
    {
        StorageError.OutOfRange => SenseData.LbaOutOfRange,
        StorageError.ReadOnly => SenseData.WriteProtected,
        StorageError.NoSpace => SenseData.SpaceAllocationFailedWriteProtect,
        StorageError.Misaligned or StorageError.InvalidArgument => SenseData.InvalidFieldInCdb,
        StorageError.Unsupported => SenseData.InvalidOpcode,
        StorageError.Closed or StorageError.NotFound => SenseData.NotReadyCauseNotReportable,
        _ => write ? SenseData.WriteError : SenseData.UnrecoveredReadError,
    };

    private static bool IsWriteOpcode(byte opcode) => opcode is ScsiOpcode.Write6 or ScsiOpcode.Write10
        or ScsiOpcode.Write12 or ScsiOpcode.Write16 or ScsiOpcode.WriteAndVerify10 or ScsiOpcode.WriteAndVerify12
        or ScsiOpcode.WriteAndVerify16 or ScsiOpcode.WriteSame10 or ScsiOpcode.WriteSame16 or ScsiOpcode.Unmap
        or ScsiOpcode.CompareAndWrite or ScsiOpcode.OrWrite16 or ScsiOpcode.WriteAtomic16 or ScsiOpcode.Sanitize;

    private static uint ReadUInt32(ReadOnlySpan<byte> cdb, int offset) => BinaryPrimitives.ReadUInt32BigEndian(cdb[offset..]);

    private static ushort ReadUInt16(ReadOnlySpan<byte> cdb, int offset) => BinaryPrimitives.ReadUInt16BigEndian(cdb[offset..]);

    private static ulong ReadUInt64(ReadOnlySpan<byte> cdb, int offset) => BinaryPrimitives.ReadUInt64BigEndian(cdb[offset..]);
}
