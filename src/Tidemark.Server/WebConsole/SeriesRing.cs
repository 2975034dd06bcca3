namespace Tidemark.Server.WebConsole;

/// <summary>
/// A bounded in-memory history of named series sampled at the same instants (the console's I/O and
/// replication lag charts): one ring of <see cref="Capacity"/> sample times, and per name a ring of
/// <see cref="Width"/> floats per sample. A name not given at a sample reads as zeros there; a name
/// not given for a whole ring's length is dropped, so memory follows the names active in the
/// window: at most names × capacity × width × 4 bytes (1,000 volumes × 360 × 4 × 4 B = 5.8 MB).
/// Not persisted: a restart starts an empty window (the capacity history is the persisted one).
/// </summary>
public sealed class SeriesRing
{
    private readonly Lock _lock = new();
    private readonly DateTimeOffset[] _times;
    private readonly Dictionary<string, Series> _series = new(StringComparer.Ordinal);
    private long _samples; // taken since start; the newest is at slot (_samples - 1) % Capacity

    public SeriesRing(int capacity, int width)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        Capacity = capacity;
        Width = width;
        _times = new DateTimeOffset[capacity];
    }

    public int Capacity { get; }

    public int Width { get; }

    /// <summary>Names with a series now (for tests and the memory figure).</summary>
    public int Names
    {
        get
        {
            lock (_lock)
            {
                return _series.Count;
            }
        }
    }

    /// <summary>Adds one sample at <paramref name="time"/>: each (name, values) given, zeros for the others.</summary>
    public void Add(DateTimeOffset time, IEnumerable<(string Name, float[] Values)> values)
    {
        lock (_lock)
        {
            var slot = (int)(_samples % Capacity);
            _times[slot] = time;
            _samples++;
            var given = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, v) in values)
            {
                if (v.Length != Width)
                {
                    throw new ArgumentException($"a sample of {name} has {v.Length} values, not {Width}", nameof(values));
                }

                if (!_series.TryGetValue(name, out var series))
                {
                    series = new Series(new float[Capacity * Width]);
                    _series[name] = series;
                }

                v.CopyTo(series.Values, slot * Width);
                series.LastGiven = _samples;
                given.Add(name);
            }

            foreach (var (name, series) in _series.ToList())
            {
                if (given.Contains(name))
                {
                    continue;
                }

                if (_samples - series.LastGiven >= Capacity)
                {
                    _series.Remove(name);
                }
                else
                {
                    Array.Clear(series.Values, slot * Width, Width);
                }
            }
        }
    }

    /// <summary>The samples of <paramref name="name"/>, oldest first, with zeros where it had none; the window's times either way.</summary>
    public IReadOnlyList<(DateTimeOffset Time, float[] Values)> Get(string name)
    {
        lock (_lock)
        {
            _series.TryGetValue(name, out var series);
            var count = (int)Math.Min(_samples, Capacity);
            var result = new List<(DateTimeOffset, float[])>(count);
            for (var i = 0; i < count; i++)
            {
                var slot = (int)((_samples - count + i) % Capacity);
                var values = new float[Width];
                // A series created after older samples were taken has zeros there, which is what it was.
                series?.Values.AsSpan(slot * Width, Width).CopyTo(values);
                result.Add((_times[slot], values));
            }

            return result;
        }
    }

    /// <summary>The window's times, oldest first, and every name's values at them (count × width floats each), taken at one instant.</summary>
    public (IReadOnlyList<DateTimeOffset> Times, IReadOnlyList<(string Name, float[] Values)> Series) All()
    {
        lock (_lock)
        {
            var count = (int)Math.Min(_samples, Capacity);
            var times = new DateTimeOffset[count];
            var series = _series.OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => (s.Key, new float[count * Width])).ToList();
            for (var i = 0; i < count; i++)
            {
                var slot = (int)((_samples - count + i) % Capacity);
                times[i] = _times[slot];
                for (var j = 0; j < series.Count; j++)
                {
                    _series[series[j].Key].Values.AsSpan(slot * Width, Width).CopyTo(series[j].Item2.AsSpan(i * Width, Width));
                }
            }

            return (times, [.. series.Select(s => (s.Key, s.Item2))]);
        }
    }

    private sealed class Series(float[] values)
    {
        public float[] Values { get; } = values;

        public long LastGiven { get; set; }
    }
}
