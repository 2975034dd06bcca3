using Microsoft.Win32.SafeHandles;

namespace Tidemark.Engine.Storage;

/// <summary>
/// A store in a regular file (sparse, grown on demand as blocks are first written) or on a raw
/// block device (capacity is the device size). Buffered pread/pwrite; <see cref="Flush"/> is fsync.
/// </summary>
public sealed class FileBackingStore : IBackingStore
{
    // errno values (Linux) and the Windows HRESULT .NET uses for a full disk.
    private const int Enospc = 28;
    private const int Edquot = 122;
    private const int ErrorDiskFull = 0x70;

    /// <summary>The largest single pwrite the store makes; a longer write is made in pieces this size.</summary>
    /// <remarks>
    /// Linux (6.16 and later) gives an ext4 file's page cache large folios, sized by the write that
    /// first brings a range in: a 1 MiB pwrite makes a 1 MiB folio. A later 4 KiB write into that
    /// folio walks every buffer head of it (ext4_block_write_begin), so after a volume was filled
    /// with large writes (a restore, a copy, nbdcopy), each 4 KiB random write cost the server 19-25
    /// µs of CPU instead of 6.5-8 µs, three quarters of it in that one kernel function (perf, kernel
    /// 6.18, docs/BENCHMARKS.md "Store writes in 32 KiB pieces"). Pieces of 32 KiB keep the folios
    /// small: 4 KiB random writes cost what they cost on a file filled by 4 KiB writes (NBD 4K random
    /// writes 1.15-1.19x, quietly). Pieces for every write cost a 1 MiB write 35 µs more CPU per MiB
    /// (32 system calls instead of one; 0.89x the IOPS, "Session 18's end against its start"), so only
    /// writes into blocks just allocated (<see cref="WriteFresh"/>), which bring their range into the
    /// page cache, are made in pieces; an overwrite in place finds its folios there already and is one
    /// pwrite. Reads are not split: they create no folios beyond what readahead does. The cost is the
    /// large requests' later on: a range filled in pieces is read and overwritten 1 MiB at a time with
    /// 32 folios per MiB instead of one (0.85-0.96x the IOPS of large folios). Larger pieces were
    /// measured and give the 4 KiB writes away sooner than they bring the large requests back (64
    /// KiB: 4K random writes 0.91-0.94x; 128 KiB: 0.86x, 1 MiB reads 1.05x), and XFS, which keeps no
    /// buffer heads, still ran 4K random writes at QD32 0.79x without pieces (docs/BENCHMARKS.md
    /// "Session 25", ADR 0010's session-25 follow-up).
    /// </remarks>
    internal const int MaxWriteBytes = 32 * 1024;

    private readonly SafeFileHandle _handle;
    private long _capacityBytes;
    private int _dirty;
    private bool _punchUnsupported;

    private FileBackingStore(string location, SafeFileHandle handle, long capacityBytes, bool isDevice)
    {
        Location = location;
        _handle = handle;
        _capacityBytes = capacityBytes;
        IsDevice = isDevice;
    }

    public string Location { get; }

    public bool IsDevice { get; }

    public long CapacityBytes => Volatile.Read(ref _capacityBytes);

    /// <summary>Creates a new sparse file store. Fails if the file exists, so no data is ever overwritten by mistake.</summary>
    public static FileBackingStore Create(string path, long capacityBytes)
    {
        if (IsBlockDevice(path))
        {
            return OpenDevice(path);
        }

        var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read);
        return new FileBackingStore(path, handle, capacityBytes, isDevice: false);
    }

    /// <summary>Opens an existing file or block device store.</summary>
    public static FileBackingStore Open(string path, long capacityBytes)
    {
        if (IsBlockDevice(path))
        {
            return OpenDevice(path);
        }

        if (!File.Exists(path))
        {
            throw new StorageException(StorageError.NotFound, $"backing store {path} is missing; restore the file or remove the store from the pool configuration");
        }

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        return new FileBackingStore(path, handle, capacityBytes, isDevice: false);
    }

    public static bool IsBlockDevice(string path)
    {
        if (!OperatingSystem.IsLinux() || !File.Exists(path))
        {
            return false;
        }

        // .NET has no S_ISBLK; a block device lives under /dev and its st_size reads as 0.
        var full = Path.GetFullPath(path);
        return full.StartsWith("/dev/", StringComparison.Ordinal) && new FileInfo(full).Length == 0;
    }

    /// <summary>Raises the capacity of a file store (capacity on demand). Devices cannot grow.</summary>
    public void Grow(long capacityBytes)
    {
        if (IsDevice)
        {
            throw new StorageException(StorageError.Unsupported, $"{Location} is a block device; its capacity is its size");
        }

        if (capacityBytes < CapacityBytes)
        {
            throw new StorageException(StorageError.InvalidArgument, $"a store cannot shrink ({CapacityBytes} -> {capacityBytes} bytes)");
        }

        Volatile.Write(ref _capacityBytes, capacityBytes);
    }

    public void Read(long offsetBytes, Span<byte> destination)
    {
        try
        {
            var done = 0;
            while (done < destination.Length)
            {
                var n = RandomAccess.Read(_handle, destination[done..], offsetBytes + done);
                if (n == 0)
                {
                    // Beyond the end of a sparse file: never written, reads as zeros.
                    destination[done..].Clear();
                    return;
                }

                done += n;
            }
        }
        catch (IOException ex)
        {
            throw new StorageException(StorageError.IoError, $"read of {destination.Length} bytes at {offsetBytes} from {Location} failed: {ex.Message}", ex);
        }
    }

    public void Write(long offsetBytes, ReadOnlySpan<byte> source) => Write(offsetBytes, source, int.MaxValue);

    /// <summary>Into blocks just allocated: in pieces of at most <see cref="MaxWriteBytes"/>, see its remarks.</summary>
    public void WriteFresh(long offsetBytes, ReadOnlySpan<byte> source) => Write(offsetBytes, source, MaxWriteBytes);

    private void Write(long offsetBytes, ReadOnlySpan<byte> source, int pieceBytes)
    {
        try
        {
            for (var done = 0; done < source.Length;)
            {
                var take = Math.Min(pieceBytes, source.Length - done);
                RandomAccess.Write(_handle, source.Slice(done, take), offsetBytes + done);
                done += take;
            }

            Volatile.Write(ref _dirty, 1);
        }
        catch (IOException ex) when (IsNoSpace(ex))
        {
            throw new StorageException(StorageError.NoSpace, $"the file system holding {Location} is full; free space there or add a store to the pool", ex);
        }
        catch (IOException ex)
        {
            throw new StorageException(StorageError.IoError, $"write of {source.Length} bytes at {offsetBytes} to {Location} failed: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// The source fills the file itself (a socket's payload is spliced into it: one kernel copy), in
    /// pieces of at most <see cref="MaxWriteBytes"/> into blocks just allocated, as
    /// <see cref="WriteFresh"/> (see its remarks). A failure of the source is not the store's and
    /// passes through; whatever the source wrote may be in the file, as after a failed pwrite.
    /// </summary>
    public void WriteFrom(long offsetBytes, int lengthBytes, IPayloadSource source, bool fresh)
    {
        var pieceBytes = fresh ? MaxWriteBytes : int.MaxValue;
        try
        {
            for (var done = 0; done < lengthBytes;)
            {
                var take = Math.Min(pieceBytes, lengthBytes - done);
                source.FillFile(_handle, offsetBytes + done, take);
                done += take;
            }
        }
        catch (IOException ex) when (ex is not PayloadSourceException && IsNoSpace(ex))
        {
            throw new StorageException(StorageError.NoSpace, $"the file system holding {Location} is full; free space there or add a store to the pool", ex);
        }
        catch (IOException ex) when (ex is not PayloadSourceException)
        {
            throw new StorageException(StorageError.IoError, $"write of {lengthBytes} bytes at {offsetBytes} to {Location} failed: {ex.Message}", ex);
        }
        finally
        {
            // Whatever part of the range reached the file must be synced by the next flush.
            Volatile.Write(ref _dirty, 1);
        }
    }

    public void Flush()
    {
        if (Interlocked.Exchange(ref _dirty, 0) == 0)
        {
            return;
        }

        try
        {
            RandomAccess.FlushToDisk(_handle);
        }
        catch (IOException ex)
        {
            Volatile.Write(ref _dirty, 1);
            throw new StorageException(StorageError.IoError, $"fsync of {Location} failed: {ex.Message}", ex);
        }
    }

    /// <summary>
    /// Punches a hole (fallocate PUNCH_HOLE | KEEP_SIZE) in a file store, so the host gets freed space
    /// back while the file keeps its size. Not on block devices (a discard there can take long and is
    /// the device's business) and not where the file system cannot (then it is never tried again).
    /// </summary>
    public void Discard(long offsetBytes, long lengthBytes)
    {
        if (IsDevice || !OperatingSystem.IsLinux() || Volatile.Read(ref _punchUnsupported) || lengthBytes <= 0)
        {
            return;
        }

        var added = false;
        try
        {
            _handle.DangerousAddRef(ref added);
            if (NativeMethods.FAllocate((int)_handle.DangerousGetHandle(), NativeMethods.PunchHoleKeepSize, offsetBytes, lengthBytes) != 0)
            {
                // EOPNOTSUPP or ENOSYS: this file system keeps its blocks. Any other failure costs only
                // host space, never data, so it must not fail the commit that freed the range.
                var errno = System.Runtime.InteropServices.Marshal.GetLastPInvokeError();
                if (errno is NativeMethods.Eopnotsupp or NativeMethods.Enosys)
                {
                    Volatile.Write(ref _punchUnsupported, true);
                }
            }
        }
        finally
        {
            if (added)
            {
                _handle.DangerousRelease();
            }
        }
    }

    public void Dispose() => _handle.Dispose();

    private static FileBackingStore OpenDevice(string path)
    {
        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        var size = NativeMethods.LSeek((int)handle.DangerousGetHandle(), 0, NativeMethods.SeekEnd);
        if (size <= 0)
        {
            handle.Dispose();
            throw new StorageException(StorageError.InvalidArgument, $"cannot read the size of block device {path}");
        }

        return new FileBackingStore(path, handle, size, isDevice: true);
    }

    private static bool IsNoSpace(IOException ex)
    {
        var code = ex.HResult & 0xFFFF;
        return code is Enospc or Edquot or ErrorDiskFull
            || ex.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);
    }
}

internal static partial class NativeMethods
{
    public const int SeekEnd = 2;

    /// <summary>FALLOC_FL_KEEP_SIZE (1) | FALLOC_FL_PUNCH_HOLE (2), linux/falloc.h.</summary>
    public const int PunchHoleKeepSize = 0x01 | 0x02;
    public const int Eopnotsupp = 95;
    public const int Enosys = 38;

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    public static partial long LSeek(int fd, long offset, int whence);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    public static partial int FAllocate(int fd, int mode, long offset, long length);
}
