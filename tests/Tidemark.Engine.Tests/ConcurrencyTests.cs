using System.Buffers.Binary;
using System.Collections.Concurrent;
using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Writers, readers, snapshots, snapshot deletion, views and flushes all at once on one volume.
/// Every block a writer writes names itself (thread, block, sequence); every read must return a
/// value that was written there (never another block's or a freed block's data), every writer reads
/// its own last write back, and every snapshot holds, per block, a write that was acknowledged no
/// later than the snapshot returned and no earlier than the last one acknowledged before it began.
/// </summary>
public class ConcurrencyTests
{
    private const int Writers = 3;
    private const int BlocksPerWriter = 512;
    private const int Block = 4096;

    private static TimeSpan Duration => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? TimeSpan.FromSeconds(60) : TimeSpan.FromSeconds(4);

    [Fact]
    public async Task ConcurrentIoAndSnapshotOperations_EveryReadIsConsistent()
    {
        using var t = new TempPool(capacityBytes: 1L << 30);
        var volume = t.Pool.CreateVolume("vol", (long)Writers * BlocksPerWriter * Block);
        var history = Enumerable.Range(0, Writers).Select(_ => new ConcurrentDictionary<int, List<long>>()).ToArray();
        var completed = new long[Writers];
        var failures = new ConcurrentQueue<string>();
        using var stop = new CancellationTokenSource(Duration);

        var writers = Enumerable.Range(0, Writers).Select(w => Task.Run(() =>
        {
            var rng = new Random(w);
            var buffer = new byte[Block * 4];
            var last = new long[BlocksPerWriter];
            for (long seq = 1; !stop.IsCancellationRequested; seq++)
            {
                var first = rng.Next(BlocksPerWriter - 4);
                var count = 1 + rng.Next(4);
                for (var i = 0; i < count; i++)
                {
                    Stamp(buffer.AsSpan(i * Block, Block), w, first + i, seq);
                    history[w].GetOrAdd(first + i, _ => []).Add(seq);
                }

                volume.Write(Offset(w, first), buffer.AsSpan(0, count * Block), forceUnitAccess: rng.Next(50) == 0);
                for (var i = 0; i < count; i++)
                {
                    last[first + i] = seq;
                }

                Volatile.Write(ref completed[w], seq);
                var probe = rng.Next(BlocksPerWriter);
                volume.Read(Offset(w, probe), buffer.AsSpan(0, Block));
                var (pw, pb, ps) = Parse(buffer.AsSpan(0, Block), w, probe);
                if (ps != last[probe] || (ps != 0 && (pw != w || pb != probe)))
                {
                    failures.Enqueue($"writer {w} block {probe}: read seq {ps} from ({pw},{pb}), last written {last[probe]}");
                }
            }
        })).ToArray();

        var snapshots = new List<(string Name, long[] Before, long[] After)>();
        var control = Task.Run(() =>
        {
            var rng = new Random(99);
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                var before = completed.Select(c => Volatile.Read(ref c)).ToArray();
                var name = $"s{n}";
                t.Pool.CreateSnapshot("vol", name);
                var after = Enumerable.Range(0, Writers).Select(w => Volatile.Read(ref completed[w]) + 1).ToArray();
                lock (snapshots)
                {
                    snapshots.Add((name, before, after));
                }

                if (n % 3 == 2 || snapshots.Count > 12)
                {
                    lock (snapshots)
                    {
                        var victim = snapshots[rng.Next(snapshots.Count)];
                        t.Pool.DeleteSnapshot($"vol@{victim.Name}");
                        snapshots.Remove(victim);
                    }
                }

                if (n % 5 == 4)
                {
                    string source;
                    lock (snapshots)
                    {
                        source = snapshots[^1].Name;
                    }

                    var view = t.Pool.CreateView($"vol@{source}", $"v{n}");
                    view.Write(0, new byte[Block], false);
                    t.Pool.DeleteVolume($"v{n}");
                }

                if (n % 4 == 0)
                {
                    t.Pool.Flush();
                }
            }
        });

        await Task.WhenAll([.. writers, control]);
        Assert.Empty(failures);

        foreach (var (name, before, after) in snapshots)
        {
            var device = t.Pool.OpenSnapshot($"vol@{name}");
            var buffer = new byte[Block];
            for (var w = 0; w < Writers; w++)
            {
                for (var b = 0; b < BlocksPerWriter; b++)
                {
                    device.Read(Offset(w, b), buffer);
                    var (pw, pb, ps) = Parse(buffer, w, b);
                    var seqs = history[w].TryGetValue(b, out var list) ? list : [];
                    var floor = seqs.Where(s => s <= before[w]).DefaultIfEmpty(0).Max();
                    Assert.True(ps == 0 || (pw == w && pb == b && seqs.Contains(ps)), $"{name}: block ({w},{b}) holds ({pw},{pb},{ps}), never written there");
                    Assert.True(ps >= floor && ps <= after[w], $"{name}: block ({w},{b}) holds seq {ps}, outside the cut [{floor}, {after[w]}]");
                }
            }
        }

        t.AssertVerifyClean();
    }

    private static long Offset(int writer, int block) => ((long)writer * BlocksPerWriter + block) * Block;

    private static void Stamp(Span<byte> block, int writer, int index, long seq)
    {
        block.Fill((byte)(seq * 31 + index));
        BinaryPrimitives.WriteInt32LittleEndian(block, writer);
        BinaryPrimitives.WriteInt32LittleEndian(block[4..], index);
        BinaryPrimitives.WriteInt64LittleEndian(block[8..], seq);
    }

    // Returns (writer, block, seq) of a stamped block, or seq 0 for a never-written (zero) block;
    // a block whose body does not match its stamp reads as seq -1 (torn or foreign data).
    private static (int Writer, int Block, long Seq) Parse(ReadOnlySpan<byte> block, int expectedWriter, int expectedBlock)
    {
        var seq = BinaryPrimitives.ReadInt64LittleEndian(block[8..]);
        var writer = BinaryPrimitives.ReadInt32LittleEndian(block);
        var index = BinaryPrimitives.ReadInt32LittleEndian(block[4..]);
        if (seq == 0 && writer == 0 && index == 0 && !block.ContainsAnyExcept((byte)0))
        {
            return (expectedWriter, expectedBlock, 0);
        }

        var fill = (byte)(seq * 31 + index);
        return block[16..].ContainsAnyExcept(fill) ? (writer, index, -1) : (writer, index, seq);
    }
}
