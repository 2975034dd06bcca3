using System.Runtime.InteropServices;

namespace Tidemark.Engine.Storage;

/// <summary>
/// The few librados (Ceph 16, librados.h) entry points the RADOS store uses, bound to Debian's
/// librados2 by P/Invoke (ADR 0017). Every call returns 0 or a count on success and -errno on failure.
/// Buffers are passed as <c>ref byte</c>, which the marshaller pins for the call.
/// </summary>
internal static partial class RadosNative
{
    private const string Lib = "librados.so.2";

    /// <summary>LIBRADOS_LOCK_FLAG_MAY_RENEW: take the lock, or extend it if this client and cookie hold it.</summary>
    public const byte LockFlagMayRenew = 1;

    public const int Enoent = 2;
    public const int Eexist = 17;
    public const int Ebusy = 16;
    public const int Enospc = 28;
    public const int Erange = 34;
    public const int Edquot = 122;
    public const int Etimedout = 110;

    [StructLayout(LayoutKind.Sequential)]
    public struct TimeVal
    {
        public long Seconds;
        public long Microseconds;
    }

    [LibraryImport(Lib, EntryPoint = "rados_create2", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Create2(out nint cluster, string clusterName, string userName, ulong flags);

    [LibraryImport(Lib, EntryPoint = "rados_conf_read_file", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ConfReadFile(nint cluster, string path);

    [LibraryImport(Lib, EntryPoint = "rados_conf_set", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int ConfSet(nint cluster, string option, string value);

    [LibraryImport(Lib, EntryPoint = "rados_connect")]
    public static partial int Connect(nint cluster);

    [LibraryImport(Lib, EntryPoint = "rados_shutdown")]
    public static partial void Shutdown(nint cluster);

    [LibraryImport(Lib, EntryPoint = "rados_ioctx_create", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int IoCtxCreate(nint cluster, string pool, out nint ioctx);

    [LibraryImport(Lib, EntryPoint = "rados_ioctx_destroy")]
    public static partial void IoCtxDestroy(nint ioctx);

    [LibraryImport(Lib, EntryPoint = "rados_read", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Read(nint ioctx, string oid, ref byte buffer, nuint length, ulong offset);

    [LibraryImport(Lib, EntryPoint = "rados_write", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Write(nint ioctx, string oid, ref byte buffer, nuint length, ulong offset);

    [LibraryImport(Lib, EntryPoint = "rados_write_full", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int WriteFull(nint ioctx, string oid, ref byte buffer, nuint length);

    [LibraryImport(Lib, EntryPoint = "rados_aio_create_completion")]
    public static partial int AioCreateCompletion(nint callbackArgument, nint onComplete, nint onSafe, out nint completion);

    [LibraryImport(Lib, EntryPoint = "rados_aio_write", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int AioWrite(nint ioctx, string oid, nint completion, nint buffer, nuint length, ulong offset);

    [LibraryImport(Lib, EntryPoint = "rados_aio_read", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int AioRead(nint ioctx, string oid, nint completion, nint buffer, nuint length, ulong offset);

    [LibraryImport(Lib, EntryPoint = "rados_aio_wait_for_complete")]
    public static partial int AioWaitForComplete(nint completion);

    [LibraryImport(Lib, EntryPoint = "rados_aio_is_complete")]
    public static partial int AioIsComplete(nint completion);

    [LibraryImport(Lib, EntryPoint = "rados_aio_get_return_value")]
    public static partial int AioGetReturnValue(nint completion);

    [LibraryImport(Lib, EntryPoint = "rados_aio_release")]
    public static partial void AioRelease(nint completion);

    [LibraryImport(Lib, EntryPoint = "rados_remove", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Remove(nint ioctx, string oid);

    [LibraryImport(Lib, EntryPoint = "rados_create_write_op")]
    public static partial nint CreateWriteOp();

    [LibraryImport(Lib, EntryPoint = "rados_release_write_op")]
    public static partial void ReleaseWriteOp(nint op);

    [LibraryImport(Lib, EntryPoint = "rados_write_op_zero")]
    public static partial void WriteOpZero(nint op, ulong offset, ulong length);

    [LibraryImport(Lib, EntryPoint = "rados_write_op_operate", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int WriteOpOperate(nint op, nint ioctx, string oid, nint mtime, int flags);

    [LibraryImport(Lib, EntryPoint = "rados_lock_exclusive", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int LockExclusive(nint ioctx, string oid, string name, string cookie, string description, ref TimeVal duration, byte flags);

    [LibraryImport(Lib, EntryPoint = "rados_unlock", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Unlock(nint ioctx, string oid, string name, string cookie);

    [LibraryImport(Lib, EntryPoint = "rados_break_lock", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int BreakLock(nint ioctx, string oid, string name, string client, string cookie);

    [LibraryImport(Lib, EntryPoint = "rados_list_lockers", StringMarshalling = StringMarshalling.Utf8)]
    public static partial nint ListLockers(
        nint ioctx, string oid, string name, out int exclusive, ref byte tag, ref nuint tagLength,
        ref byte clients, ref nuint clientsLength, ref byte cookies, ref nuint cookiesLength, ref byte addrs, ref nuint addrsLength);

    [LibraryImport(Lib, EntryPoint = "rados_mon_command")]
    public static partial int MonCommand(nint cluster, ref nint commands, nuint commandCount, nint inBuffer, nuint inLength, out nint outBuffer, out nuint outLength, out nint status, out nuint statusLength);

    [LibraryImport(Lib, EntryPoint = "rados_buffer_free")]
    public static partial void BufferFree(nint buffer);

    public static string Describe(int rc) => $"{Marshal.GetPInvokeErrorMessage(-rc)} (errno {-rc})";
}
