using System.Runtime.InteropServices;

namespace Tidemark.TestKit;

/// <summary>POSIX signals by PID (Process.Kill only sends SIGKILL, and only to processes we started).</summary>
public static partial class Signals
{
    public const int SigInt = 2;
    public const int SigKill = 9;
    public const int SigTerm = 15;
    public const int SigCont = 18;
    public const int SigStop = 19;

    public static void Send(int pid, int signal)
    {
        if (Kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed with errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>For cleanup: the process may already be gone.</summary>
    public static bool TrySend(int pid, int signal) => Kill(pid, signal) == 0;

    public static bool IsAlive(int pid) => Kill(pid, 0) == 0;

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
