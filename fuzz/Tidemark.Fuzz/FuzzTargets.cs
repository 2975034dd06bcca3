using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Nbd;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Fuzz;

/// <summary>
/// The fuzz targets: whatever bytes arrive from the wire, a target returns normally. An exception
/// escaping one, or a session that does not end once its input is exhausted, is a bug (AFL records
/// the input as a crash or a hang). The same targets run a short seeded pass in the test suite
/// (tests/Tidemark.Fuzz.Tests) and under afl-fuzz on demand (scripts/fuzz).
/// </summary>
public static class FuzzTargets
{
    /// <summary>Longest a single input may keep a session alive after its input ended.</summary>
    private static readonly TimeSpan SessionLimit = TimeSpan.FromSeconds(10);

    public static IReadOnlyDictionary<string, Action<byte[]>> All { get; } = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
    {
        ["nbd"] = input => Nbd(input),
        ["iscsi"] = input => Iscsi(input),
        ["cdb"] = input => Cdb(input),
        ["stream"] = input => StreamTarget.Run(input),
    };

    /// <summary>
    /// An NBD client's bytes (handshake, options, requests) against an export of a 1 MiB memory
    /// volume. The session must end by itself once the input ends, without an exception. Inputs of
    /// odd length see a volume that prefers several reads in flight, so READs go to the connection's
    /// read workers (ADR 0021) while the rest of the input is parsed.
    /// </summary>
    public static NbdSessionEnd Nbd(byte[] input)
    {
        var memory = new MemoryBlockDevice(1 << 20);
        IBlockDevice device = input.Length % 2 == 1 ? new PrefersConcurrentReads(memory) : memory;
        var catalog = new NbdExportCatalog { DefaultExportName = "vol" };
        catalog.Set(new NbdExport("vol", device, "fuzz"));
        var toServer = new Pipe(Unbounded);
        var fromServer = new Pipe(Unbounded);
        var options = new NbdServerOptions { MaxOptionDataBytes = 4096, MaxOptionsPerConnection = 64 };
        var connection = new NbdConnection(new Duplex(toServer.Reader, fromServer.Writer), catalog, options);
        var session = connection.RunAsync();
        toServer.Writer.Write((ReadOnlySpan<byte>)input);
        toServer.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        toServer.Writer.Complete();
        var end = Finish(session, "NBD");
        if (!Enum.IsDefined(end.Reason))
        {
            throw new InvalidOperationException($"the NBD session ended with an undefined reason {end.Reason}");
        }

        fromServer.Reader.Complete();
        return end;
    }

    /// <summary>An initiator's bytes (login, commands, data, logout) against a target with a 1 MiB LUN, which is returned.</summary>
    public static MemoryBlockDevice Iscsi(byte[] input)
    {
        var lun = new MemoryBlockDevice(1 << 20);
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Seeds.IscsiTarget, [new IscsiLunDefinition(0, lun)]));
        var limits = new IscsiLimits { ProtocolErrorLinger = TimeSpan.FromMilliseconds(1) };
        var toTarget = new Pipe(Unbounded);
        var fromTarget = new Pipe(Unbounded);
        var connection = new IscsiConnection(new Duplex(toTarget.Reader, fromTarget.Writer), catalog, limits, "127.0.0.1:3260");
        var session = connection.RunAsync();
        toTarget.Writer.Write((ReadOnlySpan<byte>)input);
        toTarget.Writer.FlushAsync().AsTask().GetAwaiter().GetResult();
        toTarget.Writer.Complete();
        Finish(session, "iSCSI");
        fromTarget.Reader.Complete();
        return lun;
    }

    /// <summary>
    /// One SCSI command: the first byte chooses how long the CDB is (6 to 32 bytes), the next ones
    /// are the CDB and the rest is data-out; data-in has room for 64 KiB. Execute must return a
    /// status (with sense data for CHECK CONDITION) for anything, and never read or write outside
    /// the 1 MiB unit.
    /// </summary>
    public static ScsiStatus Cdb(byte[] input)
    {
        if (input.Length == 0)
        {
            return ScsiStatus.Good;
        }

        ReadOnlySpan<int> lengths = [6, 10, 12, 16, 32];
        var cdbLength = Math.Min(lengths[input[0] % lengths.Length], input.Length - 1);
        var cdb = input.AsSpan(1, cdbLength);
        var dataOut = input.AsSpan(1 + cdbLength);
        var unit = new ScsiLogicalUnit(new MemoryBlockDevice(1 << 20, 512), readOnly: (input[0] & 0x80) != 0);
        var nexus = unit.OpenNexus();
        var dataIn = new byte[64 * 1024];
        var sense = new byte[SenseData.FixedFormatLengthBytes];
        var result = unit.Execute(nexus, new ScsiCommand(cdb, dataOut, dataIn, sense));
        if (result.Status == ScsiStatus.CheckCondition && !SenseData.TryRead(sense, out _))
        {
            throw new InvalidOperationException("CHECK CONDITION without readable sense data");
        }

        return result.Status;
    }

    private static PipeOptions Unbounded { get; } = new(pauseWriterThreshold: 0, resumeWriterThreshold: 0, useSynchronizationContext: false);

    private static T Finish<T>(Task<T> session, string protocol)
    {
        if (!session.Wait(SessionLimit))
        {
            throw new TimeoutException($"the {protocol} session did not end within {SessionLimit.TotalSeconds} s of its input ending");
        }

        return session.Result;
    }

    private static void Finish(Task session, string protocol)
    {
        if (!session.Wait(SessionLimit))
        {
            throw new TimeoutException($"the {protocol} session did not end within {SessionLimit.TotalSeconds} s of its input ending");
        }

        session.GetAwaiter().GetResult();
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }

    /// <summary>A device as a RADOS-backed volume presents itself: several reads in flight pay off.</summary>
    private sealed class PrefersConcurrentReads(IBlockDevice inner) : ForwardingDevice(inner)
    {
        public override int PreferredConcurrency => 32;
    }
}
