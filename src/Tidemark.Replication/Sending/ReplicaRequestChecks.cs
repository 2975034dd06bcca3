using Tidemark.Api;

namespace Tidemark.Replication;

/// <summary>What an administrator may ask of a replica (create, update): each setting checked, with the error saying what to write instead.</summary>
internal static class ReplicaRequestChecks
{
    public static void CheckLevel(int? level)
    {
        if (level is < 0 or > 22)
        {
            throw new StorageException(StorageError.InvalidArgument, $"the zstd level is 1 (fastest) to 22 (smallest), or 0 to send blocks uncompressed; not {level}");
        }
    }

    /// <summary>Bytes per second, at least 64 KiB/s (below that a sync of any size would take hours).</summary>
    public static long? CheckBandwidth(string? bandwidth)
    {
        if (bandwidth is null)
        {
            return null;
        }

        if (!ByteSize.TryParse(bandwidth, out var rate) || rate < 64 * 1024)
        {
            throw new StorageException(StorageError.InvalidArgument, $"bandwidth '{bandwidth}' is not a rate; write bytes per second of at least 64K, such as 20M or 1G, or off");
        }

        return rate;
    }

    public static void CheckStandby(IReadOnlyList<StandbyExportDto>? exports)
    {
        foreach (var export in exports ?? [])
        {
            if (export.Protocol is not ("nbd" or "iscsi"))
            {
                throw new StorageException(StorageError.InvalidArgument, $"a standby export is 'nbd' or 'iscsi' (optionally with a name, nbd:NAME), not '{export.Protocol}'");
            }

            if (export.Name is not null)
            {
                SettingText.CheckExportName(export.Name);
            }

            if (export.Protocol == "nbd" && (export.Iqn is not null || export.AllowedInitiators is { Count: > 0 }))
            {
                throw new StorageException(StorageError.InvalidArgument, "an IQN and allowed initiators belong to an iSCSI standby export, not an NBD one");
            }
        }
    }
}
