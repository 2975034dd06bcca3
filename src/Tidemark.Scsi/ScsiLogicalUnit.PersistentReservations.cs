using System.Buffers.Binary;
using System.Text;

namespace Tidemark.Scsi;

/// <summary>
/// SPC-4 5.9 persistent reservations (PERSISTENT RESERVE IN/OUT). State is kept in memory for the
/// life of the process (no APTPL), keyed by the I_T nexus identity the transport gives
/// <see cref="ScsiLogicalUnit.OpenNexus"/>, so a re-login by the same initiator port keeps its
/// registration. Reservations survive LOGICAL UNIT RESET, as SPC-4 requires.
/// </summary>
public sealed partial class ScsiLogicalUnit
{
    private const byte PersistentReserveIn = 0x5E;
    private const byte PersistentReserveOut = 0x5F;

    /// <summary>SPC-4 table 187: reservation types.</summary>
    private const byte WriteExclusive = 1;
    private const byte ExclusiveAccess = 3;
    private const byte WriteExclusiveRegistrantsOnly = 5;
    private const byte ExclusiveAccessRegistrantsOnly = 6;
    private const byte WriteExclusiveAllRegistrants = 7;
    private const byte ExclusiveAccessAllRegistrants = 8;

    /// <summary>Registrations one unit keeps; bounds memory against a misbehaving initiator.</summary>
    private const int MaxRegistrations = 256;

    private readonly Lock _prLock = new();
    private readonly Dictionary<long, Registration> _registrations = [];
    private long _prHolder;
    private byte _prType;
    private uint _prGeneration;
    private volatile bool _prActive;

    private readonly record struct Registration(ulong Key, string Port);

    private static bool IsAllRegistrants(byte type) => type is WriteExclusiveAllRegistrants or ExclusiveAccessAllRegistrants;

    /// <summary>SPC-4 5.9.1 table 43 (simplified): does an existing persistent reservation block this command?</summary>
    private bool PersistentReservationConflict(long nexusKey, byte opcode)
    {
        if (!_prActive)
        {
            return false;
        }

        lock (_prLock)
        {
            if (_prType == 0)
            {
                return opcode is ScsiOpcode.Reserve6 or ScsiOpcode.Reserve10 && _registrations.Count > 0;
            }

            var registered = _registrations.ContainsKey(nexusKey);
            var holder = IsAllRegistrants(_prType) ? registered : _prHolder == nexusKey;
            if (holder || opcode is ScsiOpcode.Inquiry or ScsiOpcode.ReportLuns or ScsiOpcode.RequestSense
                or PersistentReserveIn or PersistentReserveOut or ScsiOpcode.TestUnitReady or ScsiOpcode.ReadCapacity10
                or ScsiOpcode.ServiceActionIn16 or ScsiOpcode.MaintenanceIn or ScsiOpcode.Release6 or ScsiOpcode.Release10)
            {
                return opcode is ScsiOpcode.Reserve6 or ScsiOpcode.Reserve10;
            }

            var write = IsWriteOpcode(opcode) || opcode is ScsiOpcode.ModeSelect6 or ScsiOpcode.ModeSelect10
                or ScsiOpcode.SynchronizeCache10 or ScsiOpcode.SynchronizeCache16 or ScsiOpcode.Reserve6 or ScsiOpcode.Reserve10;
            return _prType switch
            {
                WriteExclusive => write,
                ExclusiveAccess => true,
                WriteExclusiveRegistrantsOnly or WriteExclusiveAllRegistrants => write && !registered,
                _ => !registered,
            };
        }
    }

    private ScsiResult PersistentReserveInCommand(in ScsiCommand c)
    {
        // SPC-4 6.13: SERVICE ACTION byte 1, ALLOCATION LENGTH bytes 7-8.
        var action = c.Cdb[1] & 0x1F;
        var allocation = ReadUInt16(c.Cdb, 7);
        var buffer = new byte[8 + (MaxRegistrations * 64)];
        int length;
        lock (_prLock)
        {
            BinaryPrimitives.WriteUInt32BigEndian(buffer, _prGeneration);
            switch (action)
            {
                case 0:
                    // READ KEYS
                    length = 8;
                    foreach (var registration in _registrations.Values)
                    {
                        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(length), registration.Key);
                        length += 8;
                    }

                    break;
                case 1:
                    // READ RESERVATION
                    length = 8;
                    if (_prType != 0)
                    {
                        var key = IsAllRegistrants(_prType) ? 0 : _registrations.GetValueOrDefault(_prHolder).Key;
                        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(8), key);
                        buffer[21] = _prType;
                        length = 24;
                    }

                    break;
                case 2:
                    // REPORT CAPABILITIES: CRH, ATP_C; TMV with every type supported.
                    BinaryPrimitives.WriteUInt16BigEndian(buffer, 8);
                    buffer[2] = 0x10 | 0x04;
                    buffer[3] = 0x80;
                    buffer[4] = 0x80 | 0x40 | 0x20 | 0x08 | 0x02;
                    buffer[5] = 0x01;
                    return c.ReturnData(buffer.AsSpan(0, 8), allocation);
                case 3:
                    length = WriteFullStatus(buffer);
                    break;
                default:
                    return c.Fail(SenseData.InvalidFieldInCdb);
            }
        }

        BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(4), (uint)(length - 8));
        return c.ReturnData(buffer.AsSpan(0, length), allocation);
    }

    private int WriteFullStatus(byte[] buffer)
    {
        // SPC-4 6.13.5: one descriptor per registration with an iSCSI TransportID (format 01b, protocol 5).
        var p = 8;
        foreach (var (nexus, registration) in _registrations)
        {
            var name = Encoding.UTF8.GetBytes(registration.Port);
            var idLength = Math.Min((name.Length + 1 + 3) & ~3, 40);
            if (p + 24 + 4 + idLength > buffer.Length)
            {
                break;
            }

            BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(p), registration.Key);
            var holder = _prType != 0 && (IsAllRegistrants(_prType) || _prHolder == nexus);
            buffer[p + 12] = (byte)(0x02 | (holder ? 0x01 : 0)); // ALL_TG_PT, R_HOLDER
            buffer[p + 13] = holder ? _prType : (byte)0;
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(p + 20), (uint)(4 + idLength));
            buffer[p + 24] = 0x45;
            BinaryPrimitives.WriteUInt16BigEndian(buffer.AsSpan(p + 26), (ushort)idLength);
            name.AsSpan(0, Math.Min(name.Length, idLength - 1)).CopyTo(buffer.AsSpan(p + 28));
            p += 28 + idLength;
        }

        return p;
    }

    private ScsiResult PersistentReserveOutCommand(ScsiNexus nexus, in ScsiCommand c)
    {
        // SPC-4 6.14: SERVICE ACTION byte 1, SCOPE/TYPE byte 2, PARAMETER LIST LENGTH bytes 5-8 (24).
        var action = c.Cdb[1] & 0x1F;
        var scope = c.Cdb[2] >> 4;
        var type = (byte)(c.Cdb[2] & 0x0F);
        var listLength = ReadUInt32(c.Cdb, 5);
        if (action > 6)
        {
            return c.Fail(SenseData.InvalidFieldInCdb, listLength);
        }

        if (listLength != 24 || c.DataOut.Length < 24)
        {
            return c.Fail(SenseData.ParameterListLengthError, listLength);
        }

        var list = c.DataOut[..24];
        var key = BinaryPrimitives.ReadUInt64BigEndian(list);
        var actionKey = BinaryPrimitives.ReadUInt64BigEndian(list[8..]);

        // SPEC_I_PT and APTPL are not supported (no persistence through power loss).
        if ((list[20] & 0x09) != 0)
        {
            return c.Fail(SenseData.InvalidFieldInParameterList, listLength);
        }

        var needsType = action is 1 or 2 or 4 or 5;
        if (needsType && (scope != 0 || type is not (WriteExclusive or ExclusiveAccess or WriteExclusiveRegistrantsOnly
            or ExclusiveAccessRegistrantsOnly or WriteExclusiveAllRegistrants or ExclusiveAccessAllRegistrants)))
        {
            return c.Fail(SenseData.InvalidFieldInCdb, listLength);
        }

        var conflict = new ScsiResult(ScsiStatus.ReservationConflict, 0, 0, listLength);
        lock (_prLock)
        {
            var registered = _registrations.TryGetValue(nexus.Key, out var mine);
            if (action is 0 or 6)
            {
                return RegisterLocked(nexus, c, action, registered ? mine : null, key, actionKey, listLength, conflict);
            }

            if (!registered || mine.Key != key)
            {
                return conflict;
            }

            if (ReserveActionLocked(nexus, c, action, type, actionKey, listLength, conflict) is { } refused)
            {
                return refused;
            }

            UpdateActive();
            return ScsiCommand.Good(0, listLength);
        }
    }

    /// <summary>REGISTER (action 0) checks the current key; REGISTER AND IGNORE EXISTING KEY (6) does not. A zero service action key unregisters.</summary>
    private ScsiResult RegisterLocked(ScsiNexus nexus, in ScsiCommand c, int action, Registration? mine, ulong key, ulong actionKey, uint listLength, ScsiResult conflict)
    {
        if (action == 0 && (mine is { } current ? current.Key != key : key != 0))
        {
            return conflict;
        }

        if (actionKey == 0)
        {
            if (mine is not null)
            {
                Unregister(nexus.Key);
            }
        }
        else
        {
            if (mine is null && _registrations.Count >= MaxRegistrations)
            {
                return c.Fail(new SenseData(SenseKey.IllegalRequest, 0x55, 0x04), listLength);
            }

            _registrations[nexus.Key] = new Registration(actionKey, nexus.Port);
        }

        _prGeneration++;
        UpdateActive();
        return ScsiCommand.Good(0, listLength);
    }

    /// <summary>RESERVE, RELEASE, CLEAR, PREEMPT (AND ABORT) by a registered nexus: null when done, else the refusal.</summary>
    private ScsiResult? ReserveActionLocked(ScsiNexus nexus, in ScsiCommand c, int action, byte type, ulong actionKey, uint listLength, ScsiResult conflict)
    {
        switch (action)
        {
            case 1:
                // RESERVE
                if (_prType == 0)
                {
                    _prType = type;
                    _prHolder = nexus.Key;
                }
                else if (_prType != type || (!IsAllRegistrants(_prType) && _prHolder != nexus.Key))
                {
                    return conflict;
                }

                return null;
            case 2:
                // RELEASE
                if (_prType != 0 && (IsAllRegistrants(_prType) || _prHolder == nexus.Key))
                {
                    if (_prType != type)
                    {
                        return c.Fail(new SenseData(SenseKey.IllegalRequest, 0x26, 0x04), listLength);
                    }

                    _prType = 0;
                    _prHolder = 0;
                }

                return null;
            case 3:
                // CLEAR
                _registrations.Clear();
                _prType = 0;
                _prHolder = 0;
                _prGeneration++;
                return null;
            default:
                // PREEMPT / PREEMPT AND ABORT (no task set to abort beyond this command).
                if (!Preempt(nexus.Key, actionKey, type))
                {
                    return actionKey == 0 ? c.Fail(SenseData.InvalidFieldInParameterList, listLength) : conflict;
                }

                _prGeneration++;
                return null;
        }
    }

    private bool Preempt(long self, ulong victimKey, byte type)
    {
        var holderKey = _prType == 0 || IsAllRegistrants(_prType) ? 0 : _registrations.GetValueOrDefault(_prHolder).Key;
        if (victimKey == 0 && !(_prType != 0 && IsAllRegistrants(_prType)))
        {
            return false;
        }

        var victims = _registrations.Where(r => r.Key != self && (victimKey == 0 || r.Value.Key == victimKey)).Select(r => r.Key).ToList();
        if (victims.Count == 0 && holderKey != victimKey)
        {
            return false;
        }

        foreach (var victim in victims)
        {
            _registrations.Remove(victim);
        }

        if (_prType != 0 && (holderKey == victimKey || IsAllRegistrants(_prType)))
        {
            // SPC-4 5.9.11.4: preempting the holder moves the reservation to the preempting nexus.
            _prType = type;
            _prHolder = self;
        }

        return true;
    }

    private void Unregister(long nexusKey)
    {
        _registrations.Remove(nexusKey);

        // SPC-4 5.9.11.3: the holder unregistering releases the reservation (all-registrants: the last one).
        if (_prType != 0 && (IsAllRegistrants(_prType) ? _registrations.Count == 0 : _prHolder == nexusKey))
        {
            _prType = 0;
            _prHolder = 0;
        }
    }

    private void UpdateActive() => _prActive = _prType != 0 || _registrations.Count > 0;
}
