using System.Buffers.Binary;
using System.Collections.Concurrent;
using Tidemark.Scsi;

namespace Tidemark.Protocols.Iscsi;

// The piece writer: a WRITE's segment that the transport staged whole (socket -> pipe on the
// connection thread) is handed over (IPayloadSource.HandOver) and written to the logical unit on this
// connection's one worker thread (pipe -> file), while the connection thread goes on receiving the
// next PDUs: receive and store write overlap, two threads busy where one was (issue 18; the 1 MiB
// write row was bound by one busy thread, docs/adr/0010-protocol-transport.md). The splice stays one
// copy. Only segments that would be written from the source inline are handed over (a segment that
// starts a piece, whole blocks, of a WRITE applied in pieces); the transport refuses a segment not all
// staged, or when the connection would have no second pipe, and that segment is written inline as before.
//
// Order and meaning. The worker runs jobs one at a time in the order they were queued, so a
// connection's pieces are applied in the order they arrived, and each runs the same way as inline:
// the whole command's checks once before its first piece, then a WRITE (16) of its blocks through the
// unit with the source (unit attention, reservations, write protection, storage errors are the unit's).
// The worker owns a queued command's outcome (Checked, Failure, TransferLengthBytes) until it is idle.
// Everything else the connection runs on a unit (any other command: READ, SYNCHRONIZE CACHE, small
// WRITEs, a piece that falls back to memory, task management) first waits until the worker is idle
// (Run, TakeSegment, HandleTaskManagement, HandleLogout, and TryStartAsyncRead for a READ that runs
// without waiting on a RADOS-backed unit): a command never overtakes queued writes, so a READ sees
// them, a SYNCHRONIZE CACHE makes them durable, and ORDERED, HEAD OF QUEUE and the reservation checks
// see the order the initiator sent. SAM would let SIMPLE tasks reorder, but the
// waits cost nothing on the rows that matter (a stream of large WRITEs never waits; a stream of small
// commands never queues) and there is one rule to reason about instead of one per task attribute.
//
// Responses. A command whose data is all in while pieces of the connection are still queued has its
// SCSI Response queued behind them (a marker job, no source): its status is the first failure of its
// pieces, as inline. The worker never waits for the output: it takes the output gate only when free
// (the connection thread is waiting for input) and sends the written commands' responses then;
// otherwise whoever holds the gate sends them, at the end of its batch or when it releases the gate
// (ReleaseOutput). So the worker never waits on the connection thread, and the connection thread
// (which waits for the worker, or for a pipe the worker gives back) never deadlocks with it.
//
// Ending. Task management waits for the worker first: an aborted task's queued pieces are written
// before the function's response, never after it. When the connection ends, queued jobs are dropped
// (their pipes closed), the one under way finishes, and the worker thread ends before the session's
// commands are released. A source that fails on the worker, or any other exception there, ends the
// connection (as a failed source on the connection thread does); the commands behind it get no GOOD.
public sealed partial class IscsiConnection
{
    private readonly byte[] _writerSense = new byte[252];
    private readonly ConcurrentQueue<PendingCommand> _written = new();
    private SerialWorker<PieceJob>? _pieceWriter;
    private long _piecesQueued;
    private long _piecesDone;
    private long _piecesHandedOver;
    private volatile bool _writerFailed;

    /// <summary>
    /// One job of the piece writer: a segment to write (Source) or, without one, the marker after the
    /// last piece of a command whose data is all in (its response is sent once the marker ran).
    /// </summary>
    private readonly record struct PieceJob(PendingCommand Pending, IDetachedPayloadSource? Source, ScsiLogicalUnit? Unit, ScsiNexus? Nexus, ulong Lba, uint Blocks, byte Flags, bool Drop);

    /// <summary>Segments handed over to the piece writer (see the notes above), for tests and diagnostics.</summary>
    public long PiecesHandedOver => Interlocked.Read(ref _piecesHandedOver);

    /// <summary>True while the piece writer has jobs queued or under way. Read on the connection thread, the only one that queues.</summary>
    private bool WriterBusy => _pieceWriter is not null && _piecesQueued != Interlocked.Read(ref _piecesDone);

    /// <summary>Waits until every job queued so far ran: the connection thread then owns the units and its commands' outcomes again.</summary>
    private void WaitForWriter()
    {
        if (WriterBusy)
        {
            _pieceWriter!.WaitIdle();
        }
    }

    /// <summary>
    /// Hands a segment that starts a piece (whole blocks) over to the piece writer; false when the
    /// transport keeps it (not all staged, no second pipe) or the writer cannot take it: written inline then.
    /// </summary>
    private bool TryHandOverPiece(PendingCommand pending, IPayloadSource source, int length)
    {
        var lun = ScsiTargetCommands.DecodeLun(pending.LunField);
        if (_writerFailed || _closing || lun < 0 || !_target!.Units.TryGetValue(lun, out var unit) || source.HandOver() is not { } detached)
        {
            return false;
        }

        PieceAddress(pending, length, out var lba, out var blocks, out var flags);
        QueuePieceJob(new PieceJob(pending, detached, unit, Nexus(lun, unit), lba, blocks, flags, pending.DataSequenceError));
        Interlocked.Increment(ref _piecesHandedOver);
        return true;
    }

    /// <summary>A command whose data is all in while pieces are queued: its response follows them (see the notes above).</summary>
    private void QueueResponseAfterPieces(PendingCommand pending) =>
        QueuePieceJob(new PieceJob(pending, null, null, null, 0, 0, 0, false));

    private void QueuePieceJob(in PieceJob job)
    {
        var writer = _pieceWriter ??= new SerialWorker<PieceJob>("iSCSI piece writer", WritePiece);
        _piecesQueued++;
        if (!writer.Enqueue(job))
        {
            // Stopped (the connection is ending): the segment was taken off the connection, so it ends.
            _piecesQueued--;
            job.Source?.Dispose();
            throw new IOException("the connection's piece writer has stopped");
        }
    }

    /// <summary>Runs one job on the worker thread.</summary>
    private void WritePiece(PieceJob job)
    {
        try
        {
            if (job.Source is null)
            {
                _written.Enqueue(job.Pending);
            }
            else if (!job.Drop && !_closing && !_writerFailed && WriterReadyForPiece(job))
            {
                Span<byte> cdb = stackalloc byte[16];
                WritePieceCdb(cdb, job.Flags, job.Lba, job.Blocks);
                var before = job.Source.RemainingBytes;
                var result = job.Unit!.Execute(job.Nexus!, new ScsiCommand(cdb, job.Source, _writerSense));
                if (result.IsGood)
                {
                    Interlocked.Add(ref _writtenFromSourceBytes, before - job.Source.RemainingBytes);
                }
                else
                {
                    job.Pending.Failure = new ScsiFailure(result.Status, _writerSense.AsSpan(0, result.SenseBytes).ToArray(), job.Pending.TransferLengthBytes);
                }
            }
        }
        catch (Exception ex)
        {
            // A failed source or a bug: the command must not be answered GOOD, and the connection ends.
            _writerFailed = true;
            EndDeadConnection($"a WRITE's segment failed on the connection's piece writer: {ex.Message}");
        }
        finally
        {
            job.Source?.Dispose();
            Interlocked.Increment(ref _piecesDone);
        }

        if (job.Source is null)
        {
            TrySendWritten();
        }
    }

    /// <summary>The worker's <see cref="ReadyForPiece"/>: the whole command's checks before its first piece, on the worker's sense buffer.</summary>
    private bool WriterReadyForPiece(in PieceJob job)
    {
        var pending = job.Pending;
        if (pending.Failure is not null)
        {
            return false;
        }

        if (!pending.Checked)
        {
            pending.Checked = true;
            var check = job.Unit!.Execute(job.Nexus!, new ScsiCommand(pending.Cdb.AsSpan(0, pending.CdbLength), [], [], _writerSense));
            if (!check.IsGood)
            {
                pending.Failure = new ScsiFailure(check.Status, _writerSense.AsSpan(0, check.SenseBytes).ToArray(), check.TransferLengthBytes);
                return false;
            }

            pending.TransferLengthBytes = check.TransferLengthBytes;
        }

        return true;
    }

    /// <summary>Sends the responses of commands whose pieces the worker wrote; the output gate is held.</summary>
    private void SendWrittenResponses()
    {
        while (_written.TryDequeue(out var pending))
        {
            if (!_closing)
            {
                FinishStreamed(pending);
            }

            ReturnPending(pending);
        }
    }

    /// <summary>Gives the output gate back, then sends responses the worker finished meanwhile (it could not take the gate).</summary>
    private void ReleaseOutput()
    {
        _outputGate.Release();
        TrySendWritten();
    }

    /// <summary>Sends the written commands' responses if the output gate is free; never waits for it (see the notes above).</summary>
    private void TrySendWritten()
    {
        if (!_written.IsEmpty && !_closing && _outputGate.Wait(0))
        {
            _ = SendWrittenAsync();
        }
    }

    /// <summary>Runs with the output gate held, and gives it back.</summary>
    private Task SendWrittenAsync()
    {
        try
        {
            if (!_closing)
            {
                SendWrittenResponses();
            }
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or ObjectDisposedException)
        {
            // The connection is ending; the receive loop reports why.
        }

        return FlushOutsideTheLoopAsync();
    }

    /// <summary>The connection is over: queued jobs are dropped, the one under way finishes, the worker ends; then the written commands are released.</summary>
    private void StopPieceWriter()
    {
        _closing = true;
        _pieceWriter?.Stop();
        SendWrittenResponses();
    }

    /// <summary>WRITE (16) with the flags byte of the command (WRPROTECT, DPO, FUA) for <paramref name="blocks"/> at <paramref name="lba"/>.</summary>
    private static void WritePieceCdb(Span<byte> cdb, byte flags, ulong lba, uint blocks)
    {
        cdb.Clear();
        cdb[0] = ScsiOpcode.Write16;
        cdb[1] = flags;
        BinaryPrimitives.WriteUInt64BigEndian(cdb[2..], lba);
        BinaryPrimitives.WriteUInt32BigEndian(cdb[10..], blocks);
    }
}
