using Tidemark.Engine;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>The control records of a stopped server's pool (ADR 0011), read or changed as an administrator's tool would.</summary>
internal static class StoredState
{
    public static T Read<T>(string dataDirectory, Func<Pool, T> read)
    {
        using var pool = Pool.Open(Path.Combine(dataDirectory, "pool"));
        return read(pool);
    }

    public static void Change(string dataDirectory, Action<Pool> change)
    {
        using var pool = Pool.Open(Path.Combine(dataDirectory, "pool"));
        change(pool);
    }
}
