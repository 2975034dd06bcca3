using System.Buffers;
using System.IO.Pipelines;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd;

// NBD_CMD_READ with several in flight (issue 22), only on a device that prefers it
// (IBlockDevice.PreferredConcurrency > 1, a RADOS-backed volume): the READ is checked on the
// connection thread and started there with IBlockDevice.ReadAsync (ParallelReads), and the connection
// thread goes on receiving requests; no thread waits for the device, and the reply is written and sent
// by the connection's replier thread once the read ended (ADR 0021); a large READ is read into a block
// the output lends and sent from it, not copied into the output. A device whose reads are page-cache
// copies (PreferredConcurrency 1, local stores) keeps the inline path of HandleRead exactly
// as it was: no hand-off, no lock, no allocation per request (issue 18: no row may fall). So does a
// READ alone (none in flight, no READ behind it in the receive buffer): the replier would only add a
// wake-up (ADR 0021).
//
// Order and meaning are those of a disk: every other request (WRITE, FLUSH, TRIM, WRITE_ZEROES,
// BLOCK_STATUS, CACHE, DISC, a READ that is refused or too large to hand off) first waits until every
// earlier READ was answered (WaitForReads, part of TakeOutputBack), so a write never overtakes an
// earlier read and a flush covers what it must. READs among themselves may finish and be answered in
// any order, each with its own cookie (proto.md "Ordering of messages and writes": the server MAY
// process commands out of order, and MAY reply out of order, except for the flush/FUA rules, which
// concern writes). Under structured replies a READ is still exactly one OFFSET_DATA chunk with DONE.
//
// The output has exactly one owner at a time, and the connection thread decides who:
// - the connection thread itself, by default;
// - the write worker, from a WRITE queued to it until TakeOutputBack found it idle (Writes.cs);
// - the read side, from the first READ handed off (_readsHandedOff) until WaitForReads found every
//   handed-off READ answered and sent. Within the read side, one thread at a time is the replier
//   (ParallelReads' remarks): the replier thread, or the connection thread when it sends what it
//   wrote before the hand-off and the answers it queued itself (FlushWritten) before it waits for
//   input. The thread that ends a device read (librados's) never writes or sends.
// A READ hand-off first takes the output back from the write worker, and a WRITE first waits for the
// reads, so the two workers never own it together. TLS changes nothing here: the protocol only sees
// the decrypted duplex pipe, whose writer is used by its one owner as on a plain connection.
//
// Session end (DISC, peer close, a violation, Abort, shutdown): DISC and peer close wait for the reads
// like any request (every READ before them is answered, then the close); the others stop the reads
// (StopReads): running device reads end by themselves (a device error is an error answer) and their
// answers are dropped, and only then are the transport completed and the buffers given back.
public sealed partial class NbdConnection : IReadReplies
{
    // A handed-off READ at least this large is read into a block the output lends and sent from it
    // (no copy into the output); a smaller one is copied, as replies batch better in one block.
    private const int LentPayloadBytes = 64 * 1024;

    private ParallelReads? _reads;
    private bool _readsHandedOff;

    /// <summary>Sets up the parallel reads when the device prefers several in flight and the options allow them.</summary>
    private void StartReadWorkersIfPreferred()
    {
        var concurrency = Math.Min(_options.MaxReadsInFlight, Device.PreferredConcurrency);
        if (concurrency > 1 && _options.MaxReadBytesInFlight > 0)
        {
            Volatile.Write(ref _reads, new ParallelReads(Device, this, concurrency, _options.MaxReadBytesInFlight, _options.MaxUnflushedReplyBytes));
        }
    }

    /// <summary>
    /// Starts a READ without waiting for it when the parallel reads are set up, the READ is well formed
    /// and small enough, and it would not be alone; false leaves it to the inline path (which answers refused READs with
    /// their error). <paramref name="buffer"/> starts with the READ's header.
    /// </summary>
    private bool TryStartRead(in NbdRequestHeader request, in ReadOnlySequence<byte> buffer)
    {
        if (_reads is not { } reads || !CanHandOff(request, reads.MaxReadBytes))
        {
            return false;
        }

        // A READ alone gains nothing from being started without waiting: with no READ in flight and
        // no other READ behind it in the receive buffer, it runs inline, and a queue depth of 1 keeps
        // the inline path exactly (a hand-off added a thread wake-up per read: 4K reads at QD1 fell
        // to 0.59x with worker threads; the replier would add one too).
        if ((!_readsHandedOff || reads.IsIdle) && !NextIsRead(buffer))
        {
            return false;
        }

        // The READ sees every earlier write applied and answered.
        TakeWritesBack();
        _readsHandedOff = true;
        reads.Start(request);
        return true;
    }

    /// <summary>True when a complete READ header follows the request at the start of <paramref name="buffer"/>.</summary>
    private static bool NextIsRead(in ReadOnlySequence<byte> buffer) =>
        buffer.Length >= 2 * NbdRequestHeader.SizeBytes
        && TryReadRequestHeader(buffer.Slice(NbdRequestHeader.SizeBytes), out var next)
        && next.Magic == NbdMagic.Request
        && next.Command == NbdCommand.Read;

    /// <summary>HandleRead's checks, without replying: flags, range, a length within the bound of bytes in flight.</summary>
    private bool CanHandOff(in NbdRequestHeader request, long maxBytes)
    {
        var allowed = NbdCommandFlags.Fua | (_structuredReplies ? NbdCommandFlags.DontFragment : NbdCommandFlags.None);
        var size = (ulong)Device.SizeBytes;
        return (request.Flags & ~allowed) == 0
            && request.LengthBytes > 0
            && request.LengthBytes <= (uint)_options.MaxPayloadBytes
            && request.LengthBytes <= maxBytes
            && request.OffsetBytes <= size
            && request.LengthBytes <= size - request.OffsetBytes;
    }

    /// <summary>The barrier: returns once every READ handed off was answered and sent; the output is the connection thread's again.</summary>
    private void WaitForReads()
    {
        if (!_readsHandedOff)
        {
            return;
        }

        _reads!.WaitAnswered();
        _readsHandedOff = false;
        if (_reads.StoppedSending)
        {
            _peerStoppedReading = true;
        }
    }

    /// <summary>Ends the reads for good and waits for the ones running (the session is over).</summary>
    private void StopReads()
    {
        if (_reads is { } reads)
        {
            reads.Stop();
            _readsHandedOff = false;
        }
    }

    ReadJob IReadReplies.RentJob(in NbdRequestHeader request)
    {
        var length = (int)request.LengthBytes;
        if (length >= LentPayloadBytes && _output is IReplySendFeature sends)
        {
            return new ReadJob(request, sends.RentPayload(length, out var offset), offset, length, Lent: true);
        }

        return new ReadJob(request, _pieces.Rent(length), 0, length, Lent: false);
    }

    int IReadReplies.UnflushedBytes => _unflushedBytes;

    void IReadReplies.WriteReply(in ReadAnswer answer)
    {
        var job = answer.Job;
        var owned = true;
        try
        {
            if (answer.Error != NbdError.None)
            {
                ReplyError(job.Request, answer.Error, answer.Message ?? "read failed");
                return;
            }

            var headerBytes = ReadReplyHeaderBytes;
            if (job.Lent && _output is IReplySendFeature sends)
            {
                // The header, then the block the device read into, as it is (no copy).
                WriteReadReplyHeader(BeginReply(headerBytes), job.Request, job.LengthBytes);
                EndReply(headerBytes);
                owned = false;
                sends.WritePayload(job.Buffer, job.Offset, job.LengthBytes);
                _unflushedBytes += job.LengthBytes;
                return;
            }

            var span = BeginReply(headerBytes + job.LengthBytes);
            job.Data.Span.CopyTo(span[headerBytes..]);
            WriteReadReplyHeader(span, job.Request, job.LengthBytes);
            EndReply(headerBytes + job.LengthBytes);
        }
        finally
        {
            if (owned)
            {
                ReturnBuffer(job);
            }
        }
    }

    void IReadReplies.Drop(in ReadJob job) => ReturnBuffer(job);

    private void ReturnBuffer(in ReadJob job)
    {
        if (!job.Lent)
        {
            _pieces.Return(job.Buffer);
        }
        else if (_output is IReplySendFeature sends)
        {
            sends.ReturnPayload(job.Buffer);
        }
    }

    ValueTask<FlushResult> IReadReplies.FlushAsync(bool onThisThread)
    {
        _unflushedBytes = 0;
        if (onThisThread && _output is IReplySendFeature sends)
        {
            return ValueTask.FromResult(new FlushResult(isCanceled: false, isCompleted: !sends.SendOnThisThread()));
        }

        return _output.FlushAsync();
    }
}
