using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Tidemark.Protocols.Nbd.Wire;

namespace Tidemark.Protocols.Nbd.Tests.Infrastructure;

internal sealed record OptionReply(NbdOptionType Option, NbdOptionReplyType Type, byte[] Data)
{
    public bool IsError => ((uint)Type & 0x80000000) != 0;

    public bool IsFinal => Type == NbdOptionReplyType.Ack || IsError;
}

internal sealed record StructuredChunk(NbdStructuredReplyHeader Header, byte[] Payload);

internal readonly record struct ExportInfo(ulong SizeBytes, NbdTransmissionFlags Flags);

/// <summary>A small hand-written NBD client over an in-memory pipe; every wait is bounded.</summary>
internal sealed class NbdTestClient(IDuplexPipe pipe)
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    public PipeWriter Output => pipe.Output;

    public PipeReader Input => pipe.Input;

    public async Task<NbdHandshakeFlags> ReadGreetingAsync()
    {
        var greeting = await ReadExactAsync(18);
        Assert.Equal(NbdMagic.InitPassword, BinaryPrimitives.ReadUInt64BigEndian(greeting));
        Assert.Equal(NbdMagic.IHaveOpt, BinaryPrimitives.ReadUInt64BigEndian(greeting.AsSpan(8)));
        return (NbdHandshakeFlags)BinaryPrimitives.ReadUInt16BigEndian(greeting.AsSpan(16));
    }

    public async Task SendAsync(ReadOnlyMemory<byte> bytes)
    {
        await pipe.Output.WriteAsync(bytes).AsTask().WaitAsync(Timeout);
    }

    public Task SendClientFlagsAsync(NbdClientFlags flags)
    {
        var raw = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(raw, (uint)flags);
        return SendAsync(raw);
    }

    public static byte[] Option(NbdOptionType option, ReadOnlySpan<byte> data)
    {
        var raw = new byte[NbdOptionHeader.SizeBytes + data.Length];
        new NbdOptionHeader(NbdMagic.IHaveOpt, option, (uint)data.Length).WriteTo(raw);
        data.CopyTo(raw.AsSpan(NbdOptionHeader.SizeBytes));
        return raw;
    }

    public Task SendOptionAsync(NbdOptionType option, ReadOnlySpan<byte> data = default) => SendAsync(Option(option, data));

    public async Task<OptionReply> ReadOptionReplyAsync()
    {
        var raw = await ReadExactAsync(NbdOptionReplyHeader.SizeBytes);
        NbdOptionReplyHeader.TryRead(raw, out var header, out var magic);
        Assert.Equal(NbdMagic.OptionReply, magic);
        var data = await ReadExactAsync((int)header.DataLengthBytes);
        return new OptionReply(header.Option, header.ReplyType, data);
    }

    public async Task<List<OptionReply>> ReadOptionRepliesAsync()
    {
        var replies = new List<OptionReply>();
        while (true)
        {
            var reply = await ReadOptionReplyAsync();
            replies.Add(reply);
            if (reply.IsFinal)
            {
                return replies;
            }
        }
    }

    public Task<List<OptionReply>> OptionAsync(NbdOptionType option, ReadOnlySpan<byte> data = default) => OptionCoreAsync(Option(option, data));

    private async Task<List<OptionReply>> OptionCoreAsync(byte[] option)
    {
        await SendAsync(option);
        return await ReadOptionRepliesAsync();
    }

    /// <summary>NBD_OPT_INFO / NBD_OPT_GO data: name length, name, request count, requests.</summary>
    public static byte[] InfoData(string name, params NbdInfoType[] requests)
    {
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var raw = new byte[4 + nameBytes.Length + 2 + (2 * requests.Length)];
        BinaryPrimitives.WriteUInt32BigEndian(raw, (uint)nameBytes.Length);
        nameBytes.CopyTo(raw, 4);
        BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(4 + nameBytes.Length), (ushort)requests.Length);
        for (var i = 0; i < requests.Length; i++)
        {
            BinaryPrimitives.WriteUInt16BigEndian(raw.AsSpan(6 + nameBytes.Length + (2 * i)), (ushort)requests[i]);
        }

        return raw;
    }

    /// <summary>LIST/SET_META_CONTEXT data: name length, name, query count, length-prefixed queries.</summary>
    public static byte[] MetaContextData(string name, params string[] queries)
    {
        var buffer = new ArrayBufferWriter<byte>();
        WriteLengthPrefixed(buffer, Encoding.UTF8.GetBytes(name));
        BinaryPrimitives.WriteUInt32BigEndian(buffer.GetSpan(4), (uint)queries.Length);
        buffer.Advance(4);
        foreach (var query in queries)
        {
            WriteLengthPrefixed(buffer, Encoding.UTF8.GetBytes(query));
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static ExportInfo ParseInfoExport(OptionReply reply)
    {
        Assert.Equal(NbdOptionReplyType.Info, reply.Type);
        Assert.Equal(12, reply.Data.Length);
        Assert.Equal(NbdInfoType.Export, (NbdInfoType)BinaryPrimitives.ReadUInt16BigEndian(reply.Data));
        return new ExportInfo(
            BinaryPrimitives.ReadUInt64BigEndian(reply.Data.AsSpan(2)),
            (NbdTransmissionFlags)BinaryPrimitives.ReadUInt16BigEndian(reply.Data.AsSpan(10)));
    }

    /// <summary>Greeting, flags, optional structured replies and base:allocation, then NBD_OPT_GO.</summary>
    public async Task<ExportInfo> HandshakeAsync(string exportName = "", bool structured = false, bool allocationContext = false)
    {
        await ReadGreetingAsync();
        await SendClientFlagsAsync(NbdClientFlags.FixedNewstyle | NbdClientFlags.NoZeroes);
        if (structured)
        {
            Assert.Equal(NbdOptionReplyType.Ack, (await OptionAsync(NbdOptionType.StructuredReply)).Single().Type);
        }

        if (allocationContext)
        {
            var replies = await OptionAsync(NbdOptionType.SetMetaContext, MetaContextData(exportName, "base:allocation"));
            Assert.Equal(NbdOptionReplyType.Ack, replies[^1].Type);
        }

        var go = await OptionAsync(NbdOptionType.Go, InfoData(exportName, NbdInfoType.BlockSize));
        Assert.Equal(NbdOptionReplyType.Ack, go[^1].Type);
        return ParseInfoExport(go.Single(r => r.Type == NbdOptionReplyType.Info && r.Data[1] == (byte)NbdInfoType.Export));
    }

    public static byte[] Request(NbdCommand command, ulong cookie, ulong offsetBytes, uint lengthBytes, NbdCommandFlags flags = NbdCommandFlags.None, byte[]? payload = null)
    {
        var raw = new byte[NbdRequestHeader.SizeBytes + (payload?.Length ?? 0)];
        new NbdRequestHeader(NbdMagic.Request, flags, command, cookie, offsetBytes, lengthBytes).WriteTo(raw);
        payload?.CopyTo(raw, NbdRequestHeader.SizeBytes);
        return raw;
    }

    public Task SendRequestAsync(NbdCommand command, ulong cookie, ulong offsetBytes, uint lengthBytes, NbdCommandFlags flags = NbdCommandFlags.None, byte[]? payload = null) =>
        SendAsync(Request(command, cookie, offsetBytes, lengthBytes, flags, payload));

    public async Task<NbdSimpleReplyHeader> ReadSimpleReplyAsync()
    {
        var raw = await ReadExactAsync(NbdSimpleReplyHeader.SizeBytes);
        NbdSimpleReplyHeader.TryRead(raw, out var header, out var magic);
        Assert.Equal(NbdMagic.SimpleReply, magic);
        return header;
    }

    public async Task<StructuredChunk> ReadChunkAsync()
    {
        var raw = await ReadExactAsync(NbdStructuredReplyHeader.SizeBytes);
        NbdStructuredReplyHeader.TryRead(raw, out var header, out var magic);
        Assert.Equal(NbdMagic.StructuredReply, magic);
        return new StructuredChunk(header, await ReadExactAsync((int)header.PayloadLengthBytes));
    }

    public async Task<byte[]> ReadExactAsync(int lengthBytes)
    {
        if (lengthBytes == 0)
        {
            return [];
        }

        using var timeout = new CancellationTokenSource(Timeout);
        while (true)
        {
            var result = await pipe.Input.ReadAsync(timeout.Token);
            var buffer = result.Buffer;
            if (buffer.Length >= lengthBytes)
            {
                var bytes = buffer.Slice(0, lengthBytes).ToArray();
                pipe.Input.AdvanceTo(buffer.GetPosition(lengthBytes));
                return bytes;
            }

            pipe.Input.AdvanceTo(buffer.Start, buffer.End);
            if (result.IsCompleted)
            {
                throw new EndOfStreamException($"wanted {lengthBytes} bytes, the server closed after {buffer.Length}");
            }
        }
    }

    /// <summary>Reads everything until the server completes its output; returns what was left.</summary>
    public async Task<byte[]> ReadToEndAsync()
    {
        using var timeout = new CancellationTokenSource(Timeout);
        while (true)
        {
            var result = await pipe.Input.ReadAsync(timeout.Token);
            if (result.IsCompleted)
            {
                var rest = result.Buffer.ToArray();
                pipe.Input.AdvanceTo(result.Buffer.End);
                return rest;
            }

            pipe.Input.AdvanceTo(result.Buffer.Start, result.Buffer.End);
        }
    }

    public ValueTask CompleteAsync() => pipe.Output.CompleteAsync();

    private static void WriteLengthPrefixed(ArrayBufferWriter<byte> buffer, byte[] value)
    {
        BinaryPrimitives.WriteUInt32BigEndian(buffer.GetSpan(4), (uint)value.Length);
        buffer.Advance(4);
        buffer.Write(value);
    }
}
