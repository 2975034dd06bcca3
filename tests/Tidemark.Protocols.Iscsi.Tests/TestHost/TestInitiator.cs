using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

/// <summary>
/// A minimal in-memory initiator for protocol tests: a pipe pair to an <see cref="IscsiConnection"/>
/// running on the thread pool, helpers to send PDUs and to read the next reply.
/// </summary>
public sealed class TestInitiator : IAsyncDisposable
{
    public const string InitiatorName = "iqn.2026-11.dev.tidemark:initiator";

    private readonly Pipe _toTarget = new();
    private readonly Pipe _fromTarget = new();
    private readonly byte[] _header = new byte[BasicHeaderSegment.LengthBytes];

    /// <param name="output">Wraps the target's output writer (a test that watches what the target queues); none when null.</param>
    /// <param name="payload">The payload feature over the target's input (a test transport that offers sources); the pipe's own when null.</param>
    /// <param name="phase">Told of the data phase as the transport would be; none when null.</param>
    public TestInitiator(IscsiTargetCatalog catalog, IscsiLimits? limits = null, Func<PipeWriter, PipeWriter>? output = null, Func<PipeReader, IPayloadFeature>? payload = null, IConnectionPhase? phase = null)
    {
        // A short linger keeps protocol-error tests fast; the behaviour is the same.
        limits ??= new IscsiLimits { ProtocolErrorLinger = TimeSpan.FromMilliseconds(200) };
        var writer = output is null ? _fromTarget.Writer : output(_fromTarget.Writer);
        Payload = payload?.Invoke(_toTarget.Reader);
        Connection = new IscsiConnection(new Duplex(_toTarget.Reader, writer), catalog, limits, "127.0.0.1:3260", phase, Payload);
        Running = Task.Run(() => Connection.RunAsync());
    }

    public IscsiConnection Connection { get; }

    /// <summary>The payload feature the test gave the connection (null: the pipe's own).</summary>
    public IPayloadFeature? Payload { get; }

    public Task Running { get; }

    public bool HeaderDigest { get; set; }

    public bool DataDigest { get; set; }

    public uint CmdSN { get; set; } = 1;

    public uint ExpStatSN { get; set; }

    public PipeWriter Output => _toTarget.Writer;

    public async Task SendAsync(byte[] bhs, ReadOnlyMemory<byte> data = default)
    {
        PduWriter.Write(_toTarget.Writer, HeaderDigest, DataDigest, bhs, data.Span);
        await _toTarget.Writer.FlushAsync();
    }

    public async Task SendRawAsync(byte[] bytes)
    {
        await _toTarget.Writer.WriteAsync(bytes);
    }

    /// <summary>Reads the next PDU: its BHS and data segment, or null when the target closed the connection.</summary>
    public async Task<(byte[] Header, byte[] Data)?> ReceiveAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        var settings = new FramingSettings(HeaderDigest, DataDigest, 16 << 20, 1024);
        while (true)
        {
            var result = await _fromTarget.Reader.ReadAsync(cts.Token);
            var buffer = result.Buffer;
            if (TryFrame(buffer, settings, out var pdu, out var consumed))
            {
                _fromTarget.Reader.AdvanceTo(consumed);
                return pdu;
            }

            if (result.IsCompleted)
            {
                _fromTarget.Reader.AdvanceTo(buffer.End);
                return null;
            }

            _fromTarget.Reader.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private bool TryFrame(ReadOnlySequence<byte> buffer, FramingSettings settings, out (byte[] Header, byte[] Data)? pdu, out SequencePosition consumed)
    {
        if (!PduReader.TryReadPdu(buffer, settings, _header, out var frame, out consumed))
        {
            pdu = null;
            return false;
        }

        Assert.True(frame.DataDigestValid);
        pdu = (frame.Header.ToArray(), frame.Data.ToArray());
        return true;
    }

    /// <summary>Sends one login request with the given keys and returns the response.</summary>
    public async Task<(LoginResponsePdu Response, Dictionary<string, string> Keys)> LoginStepAsync(
        int currentStage, int nextStage, bool transit, params (string Key, string Value)[] keys)
    {
        var text = Text(keys);
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new LoginRequestPdu(transit, false, currentStage, nextStage, 0, 0, text.Length, 0x0002_3D00_0001, 0, 1, 0, CmdSN, ExpStatSN).WriteTo(bhs);
        await SendAsync(bhs, text);
        var reply = await ReceiveAsync() ?? throw new InvalidOperationException("connection closed during login");
        Assert.True(LoginResponsePdu.TryRead(reply.Header, out var response));
        ExpStatSN = response.Sequence.StatSN + 1;
        return (response, ParseText(reply.Data));
    }

    /// <summary>Logs in to a normal session without authentication, straight to full feature phase.</summary>
    public async Task<(LoginResponsePdu Response, Dictionary<string, string> Keys)> LoginAsync(string target, params (string Key, string Value)[] extra)
    {
        var (security, _) = await LoginStepAsync(0, 1, true, ("InitiatorName", InitiatorName), ("TargetName", target), ("SessionType", "Normal"), ("AuthMethod", "None"));
        if (security.Status != LoginStatus.Success)
        {
            return (security, []);
        }

        return await LoginStepAsync(1, 3, true, extra);
    }

    public async Task<(byte[] Header, byte[] Data)> CommandAsync(byte[] cdb, uint expectedLength, bool read, bool write, byte[]? immediate = null, uint itt = 0x10, bool final = true)
    {
        var bhs = new byte[BasicHeaderSegment.LengthBytes];
        new ScsiCommandPdu(false, final, read, write, 1, immediate?.Length ?? 0, 0, itt, expectedLength, CmdSN++, ExpStatSN).WriteTo(bhs, cdb);
        await SendAsync(bhs, immediate ?? []);
        return await ReceiveAsync() ?? throw new InvalidOperationException("connection closed");
    }

    public static byte[] Text(params (string Key, string Value)[] keys) =>
        Encoding.UTF8.GetBytes(string.Concat(keys.Select(k => $"{k.Key}={k.Value}\0")));

    public static Dictionary<string, string> ParseText(byte[] data)
    {
        var pairs = new List<KeyValuePair<string, string>>();
        Assert.True(TextParameters.TryParse(data, pairs));
        var result = new Dictionary<string, string>();
        foreach (var (k, v) in pairs)
        {
            result[k] = result.TryGetValue(k, out var old) ? old + "|" + v : v;
        }

        return result;
    }

    public async ValueTask DisposeAsync()
    {
        await _toTarget.Writer.CompleteAsync();
        await Running.WaitAsync(TimeSpan.FromSeconds(10));
        await _fromTarget.Reader.CompleteAsync();
    }

    private sealed class Duplex(PipeReader input, PipeWriter output) : IDuplexPipe
    {
        public PipeReader Input { get; } = input;

        public PipeWriter Output { get; } = output;
    }
}
