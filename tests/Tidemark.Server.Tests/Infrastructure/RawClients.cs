using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// An NBD client that completes the fixed newstyle handshake (NBD_OPT_EXPORT_NAME) and then stays
/// attached, the way a mounted filesystem's client does between requests.
/// </summary>
public sealed class AttachedNbdClient : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;

    private AttachedNbdClient(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    public IPEndPoint LocalEndpoint => (IPEndPoint)_tcp.Client.LocalEndPoint!;

    public static async Task<AttachedNbdClient> ConnectAsync(string address, string export)
    {
        var tcp = new TcpClient(AddressFamily.InterNetwork);
        await tcp.ConnectAsync(IPEndPoint.Parse(address));
        var client = new AttachedNbdClient(tcp);
        var greeting = new byte[18];
        await client._stream.ReadExactlyAsync(greeting);
        await client._stream.WriteAsync(new byte[] { 0, 0, 0, 3 }); // FIXED_NEWSTYLE | NO_ZEROES
        var name = Encoding.UTF8.GetBytes(export);
        var option = new byte[16 + name.Length];
        BinaryPrimitives.WriteUInt64BigEndian(option, 0x49484156454F5054); // IHAVEOPT
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(8), 1); // NBD_OPT_EXPORT_NAME
        BinaryPrimitives.WriteUInt32BigEndian(option.AsSpan(12), (uint)name.Length);
        name.CopyTo(option, 16);
        await client._stream.WriteAsync(option);
        var info = new byte[10]; // export size and transmission flags
        await client._stream.ReadExactlyAsync(info);
        return client;
    }

    /// <summary>True once the server has closed the connection (a read returns end of stream).</summary>
    public async Task<bool> ClosedByServerAsync(TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        try
        {
            return await _stream.ReadAsync(new byte[1], timeout.Token) == 0;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>NBD_CMD_READ on this connection (simple reply: no structured replies were negotiated).</summary>
    public async Task<byte[]> ReadAsync(long offset, int length)
    {
        var request = new byte[28];
        BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513); // NBD_REQUEST_MAGIC
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), (ulong)Interlocked.Increment(ref _handle));
        BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), (ulong)offset);
        BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
        await _stream.WriteAsync(request);
        var reply = new byte[16];
        await _stream.ReadExactlyAsync(reply);
        if (BinaryPrimitives.ReadUInt32BigEndian(reply) != 0x67446698 || BinaryPrimitives.ReadUInt32BigEndian(reply.AsSpan(4)) is var error and not 0)
        {
            throw new IOException($"NBD read at {offset} failed (reply {Convert.ToHexString(reply)})");
        }

        var data = new byte[length];
        await _stream.ReadExactlyAsync(data);
        return data;
    }

    /// <summary>
    /// Sends <paramref name="count"/> NBD_CMD_READs of <paramref name="length"/> bytes and reads none
    /// of the replies: a client that stopped reading (or half-closed its side).
    /// </summary>
    public async Task SendReadsAsync(int count, int length)
    {
        var request = new byte[28];
        for (var i = 0; i < count; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(request, 0x25609513); // NBD_REQUEST_MAGIC
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(8), (ulong)Interlocked.Increment(ref _handle));
            BinaryPrimitives.WriteUInt64BigEndian(request.AsSpan(16), 0);
            BinaryPrimitives.WriteUInt32BigEndian(request.AsSpan(24), (uint)length);
            await _stream.WriteAsync(request);
        }
    }

    private long _handle;

    public void Dispose() => _tcp.Dispose();
}

/// <summary>
/// An iSCSI initiator over TCP that logs in to a normal session and then answers what a target asks
/// of it: NOP-In pings and an Asynchronous Message that requests a logout (RFC 7143 11.9.1).
/// </summary>
public sealed class AttachedIscsiSession : IDisposable
{
    private readonly TcpClient _tcp;
    private readonly NetworkStream _stream;
    private uint _cmdSn = 1;
    private uint _expStatSn;

    private AttachedIscsiSession(TcpClient tcp)
    {
        _tcp = tcp;
        _stream = tcp.GetStream();
    }

    /// <param name="operationalKeys">Keys offered in the operational stage, each "Key=Value\0".</param>
    public static async Task<AttachedIscsiSession> LoginAsync(string portal, string initiator, string target, string operationalKeys = "")
    {
        var tcp = new TcpClient(AddressFamily.InterNetwork);
        await tcp.ConnectAsync(IPEndPoint.Parse(portal));
        var session = new AttachedIscsiSession(tcp);
        await session.LoginStepAsync(0, 1, $"InitiatorName={initiator}\0TargetName={target}\0SessionType=Normal\0AuthMethod=None\0");
        await session.LoginStepAsync(1, 3, operationalKeys);
        return session;
    }

    /// <summary>
    /// WRITE (16) of <paramref name="data"/> at <paramref name="lba"/> (512-byte blocks): its first
    /// <paramref name="immediateBytes"/> as immediate data, the rest in Data-Out of
    /// <paramref name="segmentBytes"/> as the R2Ts ask (no digests). Returns the SCSI status.
    /// </summary>
    public async Task<byte> WriteAsync(uint itt, ulong lba, byte[] data, int immediateBytes, int segmentBytes)
    {
        var cdb = new byte[16];
        cdb[0] = 0x8A;
        BinaryPrimitives.WriteUInt64BigEndian(cdb.AsSpan(2), lba);
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)(data.Length / 512));
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, false, true, 1, immediateBytes, 0, itt, (uint)data.Length, _cmdSn++, _expStatSn).WriteTo(bhs, cdb);
        await SendAsync(bhs, data[..immediateBytes]);
        while (await ReceiveAsync(CancellationToken.None) is { } pdu)
        {
            if (ScsiResponsePdu.TryRead(pdu.Header, out var status))
            {
                _expStatSn = status.Sequence.StatSN + 1;
                return status.Status;
            }

            Assert.True(ReadyToTransferPdu.TryRead(pdu.Header, out var r2t));
            uint dataSn = 0;
            var end = (int)(r2t.BufferOffset + r2t.DesiredDataTransferLengthBytes);
            for (var offset = (int)r2t.BufferOffset; offset < end; offset += segmentBytes)
            {
                var length = Math.Min(segmentBytes, end - offset);
                new DataOutPdu(offset + length == end, length, 0, itt, r2t.TargetTransferTag, _expStatSn, dataSn++, (uint)offset).WriteTo(bhs);
                await SendAsync(bhs, data[offset..(offset + length)]);
            }
        }

        throw new InvalidOperationException("the target closed the connection in the middle of a WRITE");
    }

    /// <summary>Sends the BHS of a WRITE (16) with <paramref name="immediateBytes"/> of immediate data and only <paramref name="sentBytes"/> of them: a peer that stops in the middle of a segment.</summary>
    public async Task SendPartOfAWriteAsync(int immediateBytes, int sentBytes)
    {
        var cdb = new byte[16];
        cdb[0] = 0x8A;
        BinaryPrimitives.WriteUInt32BigEndian(cdb.AsSpan(10), (uint)(immediateBytes / 512));
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, true, false, true, 1, immediateBytes, 0, 0x500, (uint)immediateBytes, _cmdSn++, _expStatSn).WriteTo(bhs, cdb);
        await _stream.WriteAsync(bhs);
        await _stream.WriteAsync(new byte[sentBytes]);
    }

    /// <summary>
    /// Waits for the target's Asynchronous Message, logs out when it asks to and returns its event and
    /// Parameter3 (seconds to log out in), or null when the connection ended without one.
    /// </summary>
    public async Task<(AsyncEvent Event, ushort Seconds)?> AnswerLogoutRequestAsync(TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        while (await ReceiveAsync(timeout.Token) is { } pdu)
        {
            if (AsyncMessagePdu.TryRead(pdu.Header, out var message))
            {
                _expStatSn = message.Sequence.StatSN + 1;
                var logout = new byte[BasicHeaderSegment.LengthBytes];
                new LogoutRequestPdu(true, 0, 0x77, 0, _cmdSn, _expStatSn).WriteTo(logout);
                await SendAsync(logout, []);
                var response = await ReceiveAsync(timeout.Token);
                Assert.True(response is { } r && LogoutResponsePdu.TryRead(r.Header, out var l) && l.Response == 0);
                return (message.Event, message.Parameter3);
            }
        }

        return null;
    }

    /// <summary>
    /// Sends <paramref name="count"/> READ (10) commands of <paramref name="blocks"/> 512-byte blocks
    /// from LBA 0 and reads none of the replies: an initiator that stopped reading.
    /// </summary>
    public async Task SendReadsAsync(int count, ushort blocks)
    {
        for (var i = 0; i < count; i++)
        {
            var bhs = new byte[BasicHeaderSegment.LengthBytes];
            byte[] cdb = [0x28, 0, 0, 0, 0, 0, 0, (byte)(blocks >> 8), (byte)blocks, 0];
            new ScsiCommandPdu(false, true, true, false, 0, 0, 0, (uint)(0x100 + i), (uint)blocks * 512, _cmdSn++, _expStatSn).WriteTo(bhs, cdb);
            await SendAsync(bhs, []);
        }
    }

    /// <summary>True once the target has closed the connection.</summary>
    public async Task<bool> ClosedByTargetAsync(TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        try
        {
            return await _stream.ReadAsync(new byte[1], timeout.Token) == 0;
        }
        catch (IOException)
        {
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Dispose() => _tcp.Dispose();

    private async Task LoginStepAsync(int currentStage, int nextStage, string keys)
    {
        var text = Encoding.UTF8.GetBytes(keys);
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new LoginRequestPdu(true, false, currentStage, nextStage, 0, 0, text.Length, 0x0002_3D00_0002, 0, 1, 0, _cmdSn, _expStatSn).WriteTo(bhs);
        await SendAsync(bhs, text);
        var reply = await ReceiveAsync(CancellationToken.None) ?? throw new InvalidOperationException("the target closed the connection during login");
        Assert.True(LoginResponsePdu.TryRead(reply.Header, out var response));
        Assert.Equal(LoginStatus.Success, response.Status);
        _expStatSn = response.Sequence.StatSN + 1;
    }

    private async Task SendAsync(byte[] bhs, byte[] data)
    {
        var padded = new byte[BasicHeaderSegment.PaddedLength(data.Length)];
        data.CopyTo(padded, 0);
        await _stream.WriteAsync(bhs);
        await _stream.WriteAsync(padded);
    }

    private async Task<(byte[] Header, byte[] Data)?> ReceiveAsync(CancellationToken cancellationToken)
    {
        var header = new byte[BasicHeaderSegment.LengthBytes];
        try
        {
            await _stream.ReadExactlyAsync(header, cancellationToken);
        }
        catch (EndOfStreamException)
        {
            return null;
        }

        var data = new byte[BasicHeaderSegment.PaddedLength(BasicHeaderSegment.ReadDataSegmentLength(header))];
        await _stream.ReadExactlyAsync(data, cancellationToken);
        return (header, data);
    }
}
