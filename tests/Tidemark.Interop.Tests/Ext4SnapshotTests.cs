using Tidemark.Api;
using Tidemark.Interop.Tests.Infrastructure;

namespace Tidemark.Interop.Tests;

/// <summary>
/// A real kernel ext4 on a Tidemark volume (NBD export, nbdfuse, loop device) and a view of its
/// snapshot mounted beside it: the snapshot keeps the file system exactly as it was at the snapshot.
/// </summary>
public sealed class Ext4SnapshotTests
{
    private const long VolumeBytes = 1L << 30;

    [Fact]
    public async Task SnapshotView_Ext4ChangedAfterSnapshot_MountsCleanWithOriginalFiles()
    {
        HostRequirements.RequireFileSystemStack();
        using var temp = new TempDirectory();
        await using var fs = await Ext4Volume.StartAsync(temp, "fs", VolumeBytes, storeCapacity: "4G");
        var (client, live) = (fs.Client, fs.Live);
        var atSnapshot = FileTree.WriteRandom(live.MountPoint, files: 320, seed: 20261124);

        // sync, then freeze: the journal is flushed and the superblock marked clean, so the
        // snapshot holds a file system that needs no recovery.
        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        await ProcessRunner.CheckAsync(AttachedExport.Tool("fsfreeze"), "-f", live.MountPoint);
        try
        {
            await client.CreateSnapshotAsync("fs", "before");
        }
        finally
        {
            await ProcessRunner.CheckAsync(AttachedExport.Tool("fsfreeze"), "-u", live.MountPoint);
        }

        var (changed, deleted) = ChangeAfterSnapshot(live.MountPoint, atSnapshot);
        await ProcessRunner.CheckAsync(AttachedExport.Tool("sync"), "-f", live.MountPoint);
        var liveAfter = FileTree.Hash(live.MountPoint);

        await client.CreateViewAsync("fs@before", "fs-before");
        var viewExport = await client.CreateExportAsync(new CreateExportRequest(Target: "fs-before", ReadOnly: true));
        await using var view = await AttachedExport.AttachAsync(viewExport.Url!, temp.CreateDirectory("view"), readOnly: true);
        var fsck = await view.CheckFileSystemAsync();
        await view.MountAsync("ro");
        var inView = FileTree.Hash(view.MountPoint);

        Assert.True(fsck.ExitCode == 0, $"e2fsck -fn on the view found problems (exit {fsck.ExitCode}):\n{fsck.StandardOutput}\n{fsck.StandardError}");
        Assert.True(live.IsMounted && view.IsMounted, "the live volume and the view are mounted side by side");
        Assert.Equal(atSnapshot, inView);
        Assert.All(changed, f => Assert.NotEqual(atSnapshot[f], liveAfter[f]));
        Assert.All(deleted, f => Assert.False(liveAfter.ContainsKey(f), $"{f} was deleted on the live volume"));
        Assert.Contains(liveAfter.Keys, f => !atSnapshot.ContainsKey(f));
    }

    /// <summary>Rewrites every 7th file, deletes every 5th and one whole directory, adds new ones.</summary>
    private static (List<string> Changed, List<string> Deleted) ChangeAfterSnapshot(string root, SortedDictionary<string, string> files)
    {
        var random = new Random(7);
        var changed = new List<string>();
        var deleted = new List<string>();
        var index = 0;
        foreach (var file in files.Keys)
        {
            var path = Path.Combine(root, file);
            if (file.StartsWith("dir7", StringComparison.Ordinal) || index % 5 == 0)
            {
                File.Delete(path);
                deleted.Add(file);
            }
            else if (index % 7 == 0)
            {
                FileTree.WriteRandomFile(path, (int)new FileInfo(path).Length, random);
                changed.Add(file);
            }

            index++;
        }

        Directory.Delete(Path.Combine(root, "dir7"), recursive: true);
        for (var i = 0; i < 40; i++)
        {
            FileTree.WriteRandomFile(Path.Combine(root, "after", $"new{i:D3}.bin"), random.Next(1 << 10, 256 << 10), random);
        }

        return (changed, deleted);
    }
}
