using System.Buffers;
using Microsoft.Win32.SafeHandles;

namespace Tidemark;

/// <summary>
/// A payload a device pulls from itself (<see cref="IBlockDevice.WriteFrom"/>): the next bytes of a
/// connection's input, consumed once, front to back. The transport behind it chooses how the bytes
/// move: a store that writes a file asks for them with <see cref="FillFile"/>, and a transport that
/// can (a plain TCP socket) moves them socket -> pipe -> file with splice(2), one kernel copy instead
/// of a copy out of the socket plus one into the page cache; everyone else takes them into memory with
/// <see cref="Fill"/>. The engine sees neither a socket nor a pipe (docs/adr/0010-protocol-transport.md,
/// "Follow-up: the payload source").
/// </summary>
/// <remarks>
/// Not thread-safe: used by the thread that runs the write. Failures of the source itself (the peer
/// closed, sent nothing until the payload's deadline, or the connection is closing) are
/// <see cref="PayloadSourceException"/>s (or <see cref="OperationCanceledException"/>), never a
/// storage error: a store lets them through, so the protocol ends the connection instead of answering
/// the write. Any other <see cref="IOException"/> out of <see cref="FillFile"/> is the file's, with
/// the errno in its <see cref="Exception.HResult"/> (ENOSPC is a full file system).
/// </remarks>
public interface IPayloadSource
{
    /// <summary>Bytes of the payload not yet delivered (what the protocol skips after a write that failed part-way).</summary>
    int RemainingBytes { get; }

    /// <summary>Fills <paramref name="destination"/> with the payload's next bytes.</summary>
    void Fill(Span<byte> destination);

    /// <summary>
    /// Writes the payload's next <paramref name="lengthBytes"/> into <paramref name="file"/> at
    /// <paramref name="fileOffset"/> (a positioned write: the file's offset does not move). The default
    /// copies through a pooled buffer.
    /// </summary>
    void FillFile(SafeFileHandle file, long fileOffset, int lengthBytes)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(Math.Min(lengthBytes, PayloadSources.CopyBytes));
        try
        {
            for (var done = 0; done < lengthBytes;)
            {
                var take = Math.Min(buffer.Length, lengthBytes - done);
                Fill(buffer.AsSpan(0, take));
                RandomAccess.Write(file, buffer.AsSpan(0, take), fileOffset + done);
                done += take;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>
    /// Reads and drops what is left of the payload, so the connection's input is in step again after a
    /// write that failed part-way (the protocol calls it; a device never does).
    /// </summary>
    void Skip()
    {
        Span<byte> scratch = stackalloc byte[4096];
        while (RemainingBytes > 0)
        {
            Fill(scratch[..Math.Min(scratch.Length, RemainingBytes)]);
        }
    }
}

/// <summary>The payload's source failed: the peer closed, went silent past the payload's deadline, or the connection ended.</summary>
public class PayloadSourceException : IOException
{
    public PayloadSourceException()
        : this("the payload's source failed")
    {
    }

    public PayloadSourceException(string message)
        : base(message)
    {
    }

    public PayloadSourceException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    /// <summary>True when the peer closed its side in the middle of the payload.</summary>
    public bool PeerClosed => InnerException is EndOfStreamException;
}

/// <summary>The memory path of a payload source, for devices and stores that take spans.</summary>
public static class PayloadSources
{
    /// <summary>The most a copy through memory holds at once (<see cref="IPayloadSource.FillFile"/>'s default).</summary>
    public const int CopyBytes = 1 << 20;

    /// <summary>
    /// <see cref="IBlockDevice.WriteFrom"/> for a device that takes only spans: the whole payload is
    /// filled into one pooled buffer, then written with <see cref="IBlockDevice.Write"/> (so the device
    /// and every decorator around it see an ordinary write). The payload is consumed whole before the
    /// write, so a device error leaves nothing to skip.
    /// </summary>
    public static void WriteThroughBuffer(IBlockDevice device, long offsetBytes, int lengthBytes, IPayloadSource source, bool forceUnitAccess)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentOutOfRangeException.ThrowIfNegative(lengthBytes);
        var buffer = ArrayPool<byte>.Shared.Rent(lengthBytes);
        try
        {
            source.Fill(buffer.AsSpan(0, lengthBytes));
            device.Write(offsetBytes, buffer.AsSpan(0, lengthBytes), forceUnitAccess);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
