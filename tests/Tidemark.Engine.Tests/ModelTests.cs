using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>
/// Model-based property test: random sequences of engine operations run against the engine and
/// against a tiny in-memory model (byte arrays); every live image, snapshot and view must read the
/// same in both after every step, and verify must be clean whenever the pool is reopened and at the end.
/// </summary>
public class ModelTests
{
    private const int Sector = 512;

    // Writes land in three hot windows so that operations collide often and span map pages
    // (a page covers 1 MiB), while checks read only those windows.
    private static readonly long[] Windows = [0, (1L << 20) - (32 << 10), 2L << 20];
    private const int WindowBytes = 64 << 10;
    private const long VolumeBytes = (2L << 20) + WindowBytes;

    public static Gen<Op> OpGen =>
        from kind in Gen.Choose(0, 99)
        from a in Gen.Choose(0, 1 << 20)
        from b in Gen.Choose(0, 1 << 20)
        from c in Gen.Choose(0, 1 << 20)
        select new Op(kind, a, b, c);

    [Property(MaxTest = 40, EndSize = 80)]
    public Property RandomOperations_EngineMatchesModel() =>
        Prop.ForAll(OpGen.ListOf().ToArbitrary(), ops => new Runner(TinyCache).Run(ops));

    // Eight map pages for the whole pool: pages are evicted and reloaded all the time.
    internal static readonly PoolOptions TinyCache = new() { MapCacheBytes = 8 * 4096, MaxDirtyPages = 4 };

    [Fact]
    public void LongRandomSequence_EngineMatchesModel()
    {
        var rng = new Random(20261124);
        var steps = Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 5000 : 600;
        var ops = Enumerable.Range(0, steps).Select(_ => new Op(rng.Next(100), rng.Next(1 << 20), rng.Next(1 << 20), rng.Next(1 << 20))).ToList();
        new Runner(new PoolOptions()).Run(ops);
    }

    public sealed record Op(int Kind, int A, int B, int C);

    private sealed class ModelVolume(string name, long size, bool isView, string? originVolume)
    {
        public string Name { get; } = name;

        public byte[] Image { get; set; } = new byte[size];

        public bool IsView { get; set; } = isView;

        public string? OriginVolume { get; } = originVolume;
    }

    private sealed record ModelSnapshot(string Volume, string Name, byte[] Image)
    {
        public string Address => $"{Volume}@{Name}";
    }

    /// <summary>Runs one sequence; <paramref name="perRun"/> gives each run its own store (a RADOS prefix) where the options name one.</summary>
    internal sealed class Runner(PoolOptions options, Func<PoolOptions, PoolOptions>? perRun = null)
    {
        private readonly List<ModelVolume> _volumes = [];
        private readonly List<ModelSnapshot> _snapshots = [];
        private readonly Dictionary<string, string> _viewOrigins = []; // view -> snapshot address
        private readonly Dictionary<string, string> _origins = []; // view -> volume it was created from (kept after deletes)
        private int _names;

        public bool Run(IReadOnlyList<Op> ops)
        {
            using var t = new TempPool(capacityBytes: 64L << 20, options: perRun?.Invoke(options) ?? options);
            foreach (var name in new[] { "a", "b" })
            {
                t.Pool.CreateVolume(name, VolumeBytes);
                _volumes.Add(new ModelVolume(name, VolumeBytes, isView: false, originVolume: null));
            }

            var step = 0;
            foreach (var op in ops)
            {
                Apply(t, op, step++);
                CheckAll(t.Pool, op);
            }

            t.AssertVerifyClean();
            t.Reopen();
            CheckAll(t.Pool, new Op(-1, 0, 0, 0));
            t.AssertVerifyClean();
            return true;
        }

        private void Apply(TempPool t, Op op, int step)
        {
            var pool = t.Pool;
            var vol = _volumes[op.A % _volumes.Count];
            switch (op.Kind)
            {
                case < 30:
                    {
                        var (offset, length) = Range(op, vol);
                        var data = Bytes.Pattern(length, op.C ^ step);
                        pool.GetVolume(vol.Name).Write(offset, data, forceUnitAccess: op.C % 7 == 0);
                        data.CopyTo(vol.Image, offset);
                        break;
                    }

                case < 35:
                    {
                        // An atomic write covers the allocation units of the range (ADR 0018).
                        var (start, length) = Range(op, vol);
                        var offset = start & ~4095L;
                        var end = Math.Min((start + length + 4095) & ~4095L, vol.Image.Length & ~4095L);
                        if (end <= offset)
                        {
                            break;
                        }

                        var data = Bytes.Pattern((int)(end - offset), op.C ^ step);
                        pool.GetVolume(vol.Name).WriteAtomic(offset, data, forceUnitAccess: op.C % 7 == 0);
                        data.CopyTo(vol.Image, offset);
                        break;
                    }

                case < 45:
                    {
                        var (offset, length) = Range(op, vol);
                        pool.GetVolume(vol.Name).Unmap(offset, length);
                        Array.Clear(vol.Image, (int)offset, length);
                        break;
                    }

                case < 50:
                    {
                        var (offset, length) = Range(op, vol);
                        pool.GetVolume(vol.Name).WriteZeroes(offset, length, mayUnmap: op.C % 2 == 0);
                        Array.Clear(vol.Image, (int)offset, length);
                        break;
                    }

                case < 62 when _snapshots.Count < 40:
                    {
                        var name = $"s{_names++}";
                        pool.CreateSnapshot(vol.Name, name);
                        _snapshots.Add(new ModelSnapshot(vol.Name, name, (byte[])vol.Image.Clone()));
                        break;
                    }

                case < 70 when _snapshots.Count > 0:
                    {
                        var snap = _snapshots[op.B % _snapshots.Count];
                        var dependents = _viewOrigins.Where(kv => kv.Value == snap.Address && _volumes.Any(v => v.Name == kv.Key && v.IsView)).ToList();
                        if (dependents.Count > 0)
                        {
                            Assert.Equal(StorageError.HasDependents, Assert.Throws<StorageException>(() => pool.DeleteSnapshot(snap.Address)).Error);
                        }
                        else
                        {
                            pool.DeleteSnapshot(snap.Address);
                            _snapshots.Remove(snap);
                        }

                        break;
                    }

                case < 76 when _snapshots.Count > 0 && _volumes.Count < 12:
                    {
                        var snap = _snapshots[op.B % _snapshots.Count];
                        var name = $"v{_names++}";
                        pool.CreateView(snap.Address, name);
                        _volumes.Add(new ModelVolume(name, snap.Image.Length, isView: true, originVolume: snap.Volume) { Image = (byte[])snap.Image.Clone() });
                        _viewOrigins[name] = snap.Address;
                        _origins[name] = snap.Volume;
                        break;
                    }

                case < 80:
                    {
                        var own = _snapshots.Where(s => s.Volume == vol.Name).ToList();
                        if (own.Count == 0)
                        {
                            break;
                        }

                        var target = own[op.B % own.Count];
                        var kept = pool.Rollback(vol.Name, target.Name);
                        Assert.NotNull(kept);
                        _snapshots.Add(new ModelSnapshot(vol.Name, kept!.Name, vol.Image));
                        vol.Image = (byte[])target.Image.Clone();
                        break;
                    }

                case < 84 when _volumes.Count >= 2:
                    {
                        var other = _volumes[(op.A + 1 + (op.B % (_volumes.Count - 1))) % _volumes.Count];
                        var group = $"g{_names++}";
                        pool.CreateGroup(group, [vol.Name, other.Name]);
                        var name = $"s{_names++}";
                        pool.SnapshotGroup(group, name);
                        _snapshots.Add(new ModelSnapshot(vol.Name, name, (byte[])vol.Image.Clone()));
                        _snapshots.Add(new ModelSnapshot(other.Name, name, (byte[])other.Image.Clone()));
                        if (op.C % 2 == 0)
                        {
                            pool.DeleteGroup(group);
                        }

                        break;
                    }

                case < 88:
                    t.Reopen();
                    t.AssertVerifyClean();
                    break;

                case < 91:
                    pool.Flush();
                    break;

                case < 94 when vol.IsView || _volumes.Count > 2:
                    {
                        var dependents = _volumes.Where(v => v != vol && v.IsView && DescendsFrom(v.Name, vol.Name)).ToList();
                        if (dependents.Count > 0)
                        {
                            Assert.Equal(StorageError.HasDependents, Assert.Throws<StorageException>(() => pool.DeleteVolume(vol.Name)).Error);
                            break;
                        }

                        pool.DeleteVolume(vol.Name);
                        _volumes.Remove(vol);
                        _snapshots.RemoveAll(s => s.Volume == vol.Name);
                        break;
                    }

                case < 96 when vol.IsView:
                    pool.PromoteView(vol.Name);
                    vol.IsView = false;
                    break;

                case < 100 when vol.Image.Length < VolumeBytes + (64 << 10):
                    {
                        var grown = vol.Image.Length + (16 << 10);
                        pool.ResizeVolume(vol.Name, grown);
                        var image = new byte[grown];
                        vol.Image.CopyTo(image, 0);
                        vol.Image = image;
                        break;
                    }

                default:
                    break;
            }
        }

        private bool DescendsFrom(string view, string volume)
        {
            for (var origin = _origins.GetValueOrDefault(view); origin is not null; origin = _origins.GetValueOrDefault(origin))
            {
                if (origin == volume)
                {
                    return true;
                }
            }

            return false;
        }

        private static (long Offset, int Length) Range(Op op, ModelVolume vol)
        {
            var window = Windows[op.B % Windows.Length];
            var sectors = WindowBytes / Sector;
            var start = (op.B / Windows.Length) % sectors;
            var length = 1 + (op.C % Math.Min(64, sectors - start));
            var offset = window + ((long)start * Sector);
            return (offset, (int)Math.Min(length * Sector, vol.Image.Length - offset));
        }

        private void CheckAll(Pool pool, Op op)
        {
            foreach (var vol in _volumes)
            {
                var volume = pool.GetVolume(vol.Name);
                CheckImage(volume, vol.Image, $"volume {vol.Name} after {op}");
                Assert.True(CountAllocated(volume) == volume.AllocatedBytes, $"volume {vol.Name} after {op}: counted {volume.AllocatedBytes} allocated bytes, its map has {CountAllocated(volume)}");
            }

            foreach (var snap in _snapshots)
            {
                CheckImage(pool.OpenSnapshot(snap.Address), snap.Image, $"snapshot {snap.Address} after {op}");
            }
        }

        /// <summary>Allocated bytes by walking the allocation status of the whole volume (what the counter must equal).</summary>
        private static long CountAllocated(IBlockDevice device)
        {
            long allocated = 0;
            var runs = new AllocationRun[256];
            var offset = 0L;
            while (offset < device.SizeBytes)
            {
                var n = device.GetAllocationStatus(offset, device.SizeBytes - offset, runs);
                foreach (var run in runs.AsSpan(0, n))
                {
                    allocated += run.State == AllocationState.Allocated ? run.LengthBytes : 0;
                    offset = run.OffsetBytes + run.LengthBytes;
                }
            }

            return allocated;
        }

        private static void CheckImage(IBlockDevice device, byte[] expected, string what)
        {
            Assert.Equal(expected.Length, device.SizeBytes);
            foreach (var window in Windows.Append(expected.Length - WindowBytes))
            {
                var actual = Bytes.Read(device, window, WindowBytes);
                if (!actual.AsSpan().SequenceEqual(expected.AsSpan((int)window, WindowBytes)))
                {
                    var at = actual.AsSpan().CommonPrefixLength(expected.AsSpan((int)window, WindowBytes));
                    Assert.Fail($"{what}: differs at byte {window + at}");
                }
            }
        }
    }
}
