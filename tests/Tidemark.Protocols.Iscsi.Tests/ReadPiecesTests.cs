using System.IO.Pipelines;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;
using Tidemark.Scsi;
using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests;

/// <summary>
/// Issue 18: a plain READ larger than a large data segment is read from the unit piece by piece
/// straight into the output and flushed as it goes, so a connection holds one flush's worth of it
/// (IscsiLimits.MaxQueuedOutputBytes) instead of the whole command twice (its buffer and its queued
/// Data-In), with the same PDUs, checks and statuses as the buffered path.
/// </summary>
public sealed class ReadPiecesTests
{
    private const int SegmentBytes = 256 * 1024;
    private const int BurstBytes = 1 << 20;

    private static readonly IscsiLimits Limits = new() { ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };

    private static byte[] Read16(ulong lba, uint blocks, byte flags = 0) => PiecesSession.Cdb16(ScsiOpcode.Read16, lba, blocks, flags);

    private static byte[] Pattern(int length, int seed) => PiecesSession.Pattern(length, seed);

    private static Task<TestInitiator> LoginAsync(IscsiTargetCatalog catalog, bool digests, QueueWatch? watch = null)
    {
        var digest = digests ? "CRC32C" : "None";
        return PiecesSession.LoginAsync(catalog, Limits, watch is null ? null : watch.Wrap, ("MaxRecvDataSegmentLength", SegmentBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            ("MaxBurstLength", BurstBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("HeaderDigest", digest), ("DataDigest", digest));
    }

    /// <summary>Receives Data-In PDUs from <paramref name="first"/> on until one carries status, or a SCSI Response follows them.</summary>
    private static async Task<(List<DataInPdu> DataIn, byte[] Data, (byte[] Header, byte[] Data)? Response)> ReceiveReadAsync(TestInitiator initiator, (byte[] Header, byte[] Data) first)
    {
        var pdus = new List<DataInPdu>();
        var data = new MemoryStream();
        (byte[] Header, byte[] Data)? pdu = first;
        while (pdu is { } current && DataInPdu.TryRead(current.Header, out var dataIn))
        {
            pdus.Add(dataIn);
            data.Write(current.Data);
            if (dataIn.HasStatus)
            {
                return (pdus, data.ToArray(), null);
            }

            pdu = await initiator.ReceiveAsync();
        }

        return (pdus, data.ToArray(), pdu);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task EightMiBReadOverAHole_ReturnsTheDevicesBytes_InBoundedFlushes(bool digests)
    {
        var watch = new QueueWatch();
        await using var initiator = await LoginAsync(Catalogs.Create(out var device), digests, watch);
        var expected = new byte[8 << 20];
        Pattern(2 << 20, 1).CopyTo(expected, 0);
        Pattern(5 << 20, 2).CopyTo(expected, 3 << 20); // [2 MiB, 3 MiB) is a hole: never written, reads as zeros
        device.Write(1 << 20, expected.AsSpan(0, 2 << 20), forceUnitAccess: false);
        device.Write(4 << 20, expected.AsSpan(3 << 20), forceUnitAccess: false);

        var first = await initiator.CommandAsync(Read16(2048, (uint)(expected.Length / 512)), (uint)expected.Length, read: true, write: false, itt: 0x50);
        var (pdus, data, response) = await ReceiveReadAsync(initiator, first);

        Assert.Null(response); // GOOD status collapsed into the last Data-In
        Assert.Equal(expected, data);
        Assert.Equal(32, pdus.Count);
        for (var i = 0; i < pdus.Count; i++)
        {
            Assert.Equal((uint)i, pdus[i].DataSN);
            Assert.Equal((uint)(i * SegmentBytes), pdus[i].BufferOffset);
            Assert.Equal(0x50u, pdus[i].InitiatorTaskTag);
            Assert.Equal(i % 4 == 3, pdus[i].Final); // F at each MaxBurstLength (RFC 7143 11.7.1)
            Assert.Equal(i == pdus.Count - 1, pdus[i].HasStatus);
        }

        Assert.Equal((byte)ScsiStatus.Good, pdus[^1].Status);

        // The buffered path queued all 8 MiB (and held an 8 MiB buffer) before its first flush.
        Assert.InRange(watch.MaxQueuedBytes, 1, Limits.MaxQueuedOutputBytes + SegmentBytes + 1024);
        Assert.InRange(initiator.Connection.ReadBufferBytes, 0, 64 * 1024);

        // The session goes on: the next command is answered with the next StatSN.
        var next = await initiator.CommandAsync(Read16(0, 8), 4096, read: true, write: false, itt: 0x51);
        Assert.True(DataInPdu.TryRead(next.Header, out var small));
        Assert.True(small.HasStatus);
        Assert.Equal(pdus[^1].Sequence.StatSN + 1, small.Sequence.StatSN);
    }

    [Fact]
    public async Task ACommandBehindAReadInTheSameWrite_IsAnsweredAfterTheReadsData()
    {
        await using var initiator = await LoginAsync(Catalogs.Create(out var device), digests: false);
        var expected = Pattern(1 << 20, 3);
        device.Write(0, expected, forceUnitAccess: false);

        var read = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, true, false, 1, 0, 0, 0x60, (uint)expected.Length, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(read, Read16(0, (uint)(expected.Length / 512)));
        var testUnitReady = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, false, false, 1, 0, 0, 0x61, 0, initiator.CmdSN++, initiator.ExpStatSN).WriteTo(testUnitReady, new byte[6]);
        await initiator.SendRawAsync([.. read, .. testUnitReady]);

        var (pdus, data, response) = await ReceiveReadAsync(initiator, (await initiator.ReceiveAsync())!.Value);
        var after = (await initiator.ReceiveAsync())!.Value;

        Assert.Null(response);
        Assert.Equal(expected, data);
        Assert.Equal(4, pdus.Count);
        Assert.True(ScsiResponsePdu.TryRead(after.Header, out var status));
        Assert.Equal(0x61u, status.InitiatorTaskTag);
        Assert.Equal(pdus[^1].Sequence.StatSN + 1, status.Sequence.StatSN);
    }

    [Fact]
    public async Task ReadPastTheEnd_IsRefusedWithLbaOutOfRange_BeforeAnyData()
    {
        await using var initiator = await LoginAsync(Catalogs.Create(out _), digests: false);

        // 16 MiB device: the first 512 KiB are in range; a piece-by-piece read without the whole
        // command's check would send them before failing.
        var lba = (ulong)(((16 << 20) - (512 << 10)) / 512);
        var reply = await initiator.CommandAsync(Read16(lba, 2048), 1 << 20, read: true, write: false, itt: 0x62);

        Assert.True(ScsiResponsePdu.TryRead(reply.Header, out var status));
        Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
        Assert.True(SenseData.TryRead(reply.Data.AsSpan(2), out var sense));
        Assert.Equal(SenseData.LbaOutOfRange, sense);
    }

    [Fact]
    public async Task AReadThatFailsPartWay_SendsTheDataBeforeTheFailure_ThenItsStatus()
    {
        var device = new FailingReads(new MemoryBlockDevice(16L << 20), failFrom: 640 << 10);
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Catalogs.Target, [new IscsiLunDefinition(0, device)]));
        await using var initiator = await LoginAsync(catalog, digests: false);

        var first = await initiator.CommandAsync(Read16(0, 2048), 1 << 20, read: true, write: false, itt: 0x63);
        var (pdus, data, response) = await ReceiveReadAsync(initiator, first);

        // Pieces of 256 KiB: the first two end before the failing byte at 640 KiB, the third holds it.
        Assert.Equal(2, pdus.Count);
        Assert.Equal(512 << 10, data.Length);
        Assert.All(pdus, p => Assert.False(p.HasStatus));
        Assert.NotNull(response);
        Assert.True(ScsiResponsePdu.TryRead(response.Value.Header, out var status));
        Assert.Equal((byte)ScsiStatus.CheckCondition, status.Status);
        Assert.Equal(2u, status.ExpDataSN);
        Assert.True(SenseData.TryRead(response.Value.Data.AsSpan(2), out var sense));
        Assert.Equal(SenseData.UnrecoveredReadError, sense);
    }

    /// <summary>Records the most bytes the target wrote between two flushes of its output.</summary>
    private sealed class QueueWatch
    {
        private long _queued;

        public long MaxQueuedBytes { get; private set; }

        public PipeWriter Wrap(PipeWriter inner) => new Writer(this, inner);

        private sealed class Writer(QueueWatch watch, PipeWriter inner) : PipeWriter
        {
            public override void Advance(int bytes)
            {
                watch._queued += bytes;
                watch.MaxQueuedBytes = Math.Max(watch.MaxQueuedBytes, watch._queued);
                inner.Advance(bytes);
            }

            public override void CancelPendingFlush() => inner.CancelPendingFlush();

            public override void Complete(Exception? exception = null) => inner.Complete(exception);

            public override ValueTask<FlushResult> FlushAsync(CancellationToken cancellationToken = default)
            {
                watch._queued = 0;
                return inner.FlushAsync(cancellationToken);
            }

            public override Memory<byte> GetMemory(int sizeHint = 0) => inner.GetMemory(sizeHint);

            public override Span<byte> GetSpan(int sizeHint = 0) => inner.GetSpan(sizeHint);
        }
    }

    /// <summary>A device whose reads of any byte at or past <c>failFrom</c> fail with an I/O error.</summary>
    private sealed class FailingReads(MemoryBlockDevice inner, long failFrom) : ForwardingDevice(inner)
    {
        public override void Read(long offsetBytes, Span<byte> destination)
        {
            if (offsetBytes + destination.Length > failFrom)
            {
                throw new StorageException(StorageError.IoError, "simulated read error");
            }

            base.Read(offsetBytes, destination);
        }
    }
}
