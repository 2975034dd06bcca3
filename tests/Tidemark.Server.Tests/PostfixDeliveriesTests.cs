using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Tidemark.Agent;
using Tidemark.TestKit;

namespace Tidemark.Server.Tests;

/// <summary>
/// What the Postfix hold reads of /proc and of the kernel's sock_diag answer, on sample text and bytes,
/// and the rule that decides from it whether a delivery agent may be in a delivery (ADR 0015): a
/// wrong answer either cuts a snapshot under a half-written message or waits for nothing.
/// </summary>
public sealed class PostfixDeliveriesTests
{
    // Fields 7 (tty_nr) to 17 (cstime), priority, nice, num_threads, itrealvalue, 22 (starttime), ...
    private const string StatTail = "0 0 0 0 0 0 0 0 0 0 0 20 0 1 0 873391 19021824 1045 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";

    [Fact]
    public void ProcStat_Parse_FieldsAfterTheLastParenthesis()
    {
        var qmgr = ProcStat.Parse($"4242 (qmgr) T 4200 4200 4200 {StatTail}\n");
        var odd = ProcStat.Parse($"77 (a (b) c) S 1 77 77 {StatTail}");
        var zombie = ProcStat.Parse($"78 (lmtp) Z 4200 4200 4200 {StatTail}");

        Assert.Equal(new ProcStat(4242, "qmgr", ProcStat.Stopped, 4200, "873391"), qmgr);
        Assert.Equal(new ProcStat(77, "a (b) c", ProcStat.Sleeping, 1, "873391"), odd);
        Assert.Equal(ProcStat.Zombie, zombie?.State);
        Assert.Null(ProcStat.Parse("4242 (qmgr) T 4200"));
        Assert.Null(ProcStat.Parse("not a stat line"));
        Assert.Null(ProcStat.Parse(""));
    }

    [Theory]
    [InlineData("7 0x7ffc8d0b6a40 0x1 0xffffffffffffffff 0x0 0x0 0x0 0x7ffc8d0b6a18 0x7f5c1b2e6f8e\n", 7)]
    [InlineData("232 0x4 0x55d0 0x64 0x3e8 0x0 0x0 0x7ffd 0x7f5c", 232)]
    [InlineData("running\n", null)]
    [InlineData("-1 0x7ffc8d0b6a18 0x7f5c1b2e6f8e\n", null)]
    [InlineData("", null)]
    public void ParseSyscall_NumberWhileBlockedInACall_NullOtherwise(string text, int? expected) =>
        Assert.Equal(expected, ProcFs.ParseSyscall(text));

    [Fact]
    public void IsWaitCall_PollSelectEpollAcceptFlock_NotWritesOrReads()
    {
        Assert.True(ProcFs.IsWaitCall(7, Architecture.X64));      // poll: Postfix's read_wait
        Assert.True(ProcFs.IsWaitCall(232, Architecture.X64));    // epoll_wait: the event loop between connections
        Assert.True(ProcFs.IsWaitCall(43, Architecture.X64));     // accept
        Assert.True(ProcFs.IsWaitCall(73, Architecture.X64));     // flock: an idle agent waiting for its service's accept lock
        Assert.False(ProcFs.IsWaitCall(44, Architecture.X64));    // sendto: a log line to a full postlog socket
        Assert.False(ProcFs.IsWaitCall(0, Architecture.X64));     // read
        Assert.False(ProcFs.IsWaitCall(1, Architecture.X64));     // write
        Assert.True(ProcFs.IsWaitCall(73, Architecture.Arm64));   // ppoll
        Assert.True(ProcFs.IsWaitCall(22, Architecture.Arm64));   // epoll_pwait
        Assert.False(ProcFs.IsWaitCall(7, Architecture.Arm));     // no table: never taken for waiting
    }

    [Theory]
    [InlineData("socket:[123456]", 123456UL, null)]
    [InlineData("/var/spool/postfix/active/4F3A21C0E2", null, "/var/spool/postfix/active/4F3A21C0E2")]
    [InlineData("/var/spool/postfix/active/4F3A21C0E2 (deleted)", null, "/var/spool/postfix/active/4F3A21C0E2")]
    [InlineData("pipe:[77]", null, null)]
    [InlineData("anon_inode:[eventpoll]", null, null)]
    [InlineData("socket:[12x]", null, null)]
    public void ParseFdTarget_SocketInodeOrPath(string target, ulong? socket, string? path)
    {
        ProcFs.ParseFdTarget(target, out var parsedSocket, out var parsedPath);

        Assert.Equal(socket, parsedSocket);
        Assert.Equal(path, parsedPath);
    }

    [Fact]
    public void UnixSocketDiag_Parse_PeersAndUnreadBytes_DoneEndsTheDump()
    {
        var first = Concat(Message(1001, peer: 1002, unread: 0), Message(1002, peer: 1001, unread: 58));
        var second = Concat(Message(2001, peer: null, unread: 3), Done());
        var sockets = new Dictionary<ulong, UnixSocketState>();

        var doneAfterFirst = UnixSocketDiag.Parse(first, sockets);
        var doneAfterSecond = UnixSocketDiag.Parse(second, sockets);

        Assert.False(doneAfterFirst);
        Assert.True(doneAfterSecond);
        Assert.Equal(new UnixSocketState(1002, 0), sockets[1001]);
        Assert.Equal(new UnixSocketState(1001, 58), sockets[1002]);
        Assert.Equal(new UnixSocketState(0, 3), sockets[2001]);
    }

    [Fact]
    public void UnixSocketDiag_Parse_ErrorAnswerAndCutMessageThrow()
    {
        var error = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(error, 20);
        BinaryPrimitives.WriteUInt16LittleEndian(error.AsSpan(4), 2);
        BinaryPrimitives.WriteInt32LittleEndian(error.AsSpan(16), -1);
        var cut = Message(1, peer: 2, unread: 0)[..30];

        Assert.Throws<IOException>(() => UnixSocketDiag.Parse(error, []));
        Assert.Throws<IOException>(() => UnixSocketDiag.Parse(cut, []));
    }

    [Theory]
    [InlineData(0u, 0u, true, false, null)]                                     // idle, waiting for a connection or a request
    [InlineData(120u, 0u, true, false, "has a delivery request of 120 bytes to read")] // the stopped qmgr sent it just before
    [InlineData(0u, 21u, true, true, null)]                                     // final status sent: file open until qmgr closes
    [InlineData(0u, 21u, false, false, null)]                                   // initial status the stopped qmgr never read
    [InlineData(0u, 0u, true, true, "is delivering 4F3A21C0E2")]                // waiting for the LMTP server's reply
    [InlineData(0u, 0u, false, true, "is delivering 4F3A21C0E2")]               // writing
    [InlineData(0u, 0u, false, false, "is running between requests")]          // maybe between reading a request and opening its file
    public void Busy_OnlyAfterTheFinalStatusOrWaitingWithNothingOpen(uint requestUnread, uint statusUnread, bool waiting, bool fileOpen, string? expected)
    {
        var look = new DeliveryAgentLook(10, "lmtp", requestUnread, statusUnread, waiting, Gone: false, fileOpen ? ["/var/spool/postfix/active/4F3A21C0E2"] : []);

        Assert.Equal(expected, look.Busy());
    }

    [Fact]
    public void Busy_GoneOrZombie_NeverBusy() =>
        Assert.Null(new DeliveryAgentLook(10, "lmtp", 0, 0, false, Gone: true, []).Busy());

    /// <summary>
    /// The journal's way back after a killed agent: SIGCONT to the process it stopped, only when pid,
    /// name and start time still match (a pid reused since is someone else's), and only in the same boot.
    /// </summary>
    [Fact]
    public async Task ContinueLeftover_SameProcessContinued_ReusedPidLeftAlone_OtherBootNothing()
    {
        using var sleeper = Process.Start("sleep", "60") ?? throw new InvalidOperationException("sleep did not start");
        try
        {
            Signals.Send(sleeper.Id, 19);
            var stopped = await WaitStateAsync(sleeper.Id, s => s == ProcStat.Stopped);
            var stat = ProcStat.Read(sleeper.Id)!.Value;
            var entry = QuiesceJournalEntry.Create(QuiesceJournalEntry.QueueManager) with { PostfixConfig = "/srv/pf", Stopped = [new StoppedProcess(stat.Pid, stat.Command, "1")] };

            var reused = PostfixHold.ContinueLeftover(entry);
            var stillStopped = ProcStat.Read(sleeper.Id)?.State;
            var otherBoot = PostfixHold.ContinueLeftover(entry with { BootId = "another boot", Stopped = [new StoppedProcess(stat.Pid, stat.Command, stat.StartTime)] });
            var stillStoppedAfterOtherBoot = ProcStat.Read(sleeper.Id)?.State;
            var same = PostfixHold.ContinueLeftover(entry with { Stopped = [new StoppedProcess(stat.Pid, stat.Command, stat.StartTime)] });
            var continued = await WaitStateAsync(sleeper.Id, s => s != ProcStat.Stopped);

            Assert.True(stopped);
            Assert.True(reused.Settled);
            Assert.EndsWith($"its queue manager (pid {stat.Pid}) had gone, nothing to continue", reused.Message, StringComparison.Ordinal);
            Assert.Equal(ProcStat.Stopped, stillStopped);
            Assert.True(otherBoot.Settled);
            Assert.Contains("before the host restarted", otherBoot.Message, StringComparison.Ordinal);
            Assert.Equal(ProcStat.Stopped, stillStoppedAfterOtherBoot);
            Assert.True(same.Settled);
            Assert.Equal($"postfix (/srv/pf): a previous run of the agent (pid {Environment.ProcessId}) stopped during a delivery hold; its queue manager (pid {stat.Pid}) continued", same.Message);
            Assert.True(continued);
        }
        finally
        {
            sleeper.Kill();
        }
    }

    private static async Task<bool> WaitStateAsync(int pid, Func<char, bool> state)
    {
        for (var i = 0; i < 500; i++)
        {
            if (ProcStat.Read(pid) is { } stat && state(stat.State))
            {
                return true;
            }

            await Task.Delay(10);
        }

        return false;
    }

    /// <summary>struct nlmsghdr + struct unix_diag_msg + UNIX_DIAG_PEER and UNIX_DIAG_RQLEN attributes, as the kernel sends them.</summary>
    private static byte[] Message(uint inode, uint? peer, uint unread)
    {
        var length = 16 + 16 + (peer is null ? 0 : 8) + 12;
        var bytes = new byte[length];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 20);
        bytes[16] = 1;
        bytes[17] = 1;
        bytes[18] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(20), inode);
        var at = 32;
        if (peer is { } p)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), 8);
            BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at + 2), 2);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 4), p);
            at += 8;
        }

        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at), 12);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(at + 2), 4);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 4), unread);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at + 8), 0);
        return bytes;
    }

    private static byte[] Done()
    {
        var bytes = new byte[20];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, 20);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 3);
        return bytes;
    }

    private static byte[] Concat(params byte[][] parts) => [.. parts.SelectMany(p => p)];
}
