using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Security.Cryptography;

namespace Tidemark.Scsi;

/// <summary>
/// The ROD tokens POPULATE TOKEN created and WRITE USING TOKEN consumes (SBC-3 4.26, ODX), shared
/// by every unit that may copy from the others (one store per server). A token is a 512-byte
/// bearer secret naming source ranges of one unit; it is bounded in number and expires after its
/// inactivity timeout. Tokens are "access upon reference" (ROD type 0001_0000h, SPC-4 8.3.5.2): the
/// data is read when the token is used, as FreeBSD's CTL does, not frozen when it was made.
/// </summary>
public sealed class RodTokenStore
{
    /// <summary>SPC-4 8.3.5.2: ROD type "access upon reference".</summary>
    public const uint AccessUponReference = 0x0001_0000;

    /// <summary>SBC-3 4.26.2: the block device zero ROD token, which represents logical blocks of zeros.</summary>
    public const uint BlockDeviceZero = 0xFFFF_0001;

    public const int TokenBytes = 512;

    private readonly ConcurrentDictionary<string, RodToken> _tokens = new(StringComparer.Ordinal);
    private readonly TimeProvider _time;

    public RodTokenStore(int maxTokens = 256, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        MaxTokens = maxTokens;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Live tokens at most: each holds a unit and its ranges until it expires, so they are bounded.</summary>
    public int MaxTokens { get; }

    public int Count => _tokens.Count;

    /// <summary>Creates a token for the ranges, or returns null when <see cref="MaxTokens"/> live tokens exist.</summary>
    internal byte[]? Create(ScsiLogicalUnit source, CopyRange[] ranges, TimeSpan inactivityTimeout, ReadOnlySpan<byte> creatorDescriptor)
    {
        var now = _time.GetUtcNow();
        foreach (var (key, expired) in _tokens)
        {
            if (expired.ExpiresAt <= now)
            {
                _tokens.TryRemove(key, out _);
            }
        }

        if (_tokens.Count >= MaxTokens)
        {
            return null;
        }

        // SPC-4 8.3.5: ROD TYPE, ROD TOKEN LENGTH (bytes after byte 7), COPY MANAGER ROD TOKEN
        // IDENTIFIER, CREATOR LOGICAL UNIT DESCRIPTOR (an identification CSCD descriptor), NUMBER OF
        // BYTES REPRESENTED; the rest is ours: 32 random bytes make the token unguessable.
        var token = new byte[TokenBytes];
        BinaryPrimitives.WriteUInt32BigEndian(token, AccessUponReference);
        BinaryPrimitives.WriteUInt16BigEndian(token.AsSpan(6), TokenBytes - 8);
        RandomNumberGenerator.Fill(token.AsSpan(8, 8));
        creatorDescriptor.CopyTo(token.AsSpan(16, 32));
        var blocks = ranges.Sum(r => (long)r.Blocks);
        BinaryPrimitives.WriteUInt64BigEndian(token.AsSpan(56), (ulong)(blocks * source.Device.LogicalBlockSizeBytes));
        RandomNumberGenerator.Fill(token.AsSpan(128, 32));
        _tokens[Key(token)] = new RodToken(source, ranges, blocks, inactivityTimeout, now);
        return token;
    }

    /// <summary>The token's ranges, refreshing its inactivity timer; null with the reason when it is unknown or expired.</summary>
    internal RodToken? Use(ReadOnlySpan<byte> token, out SenseData? problem)
    {
        problem = null;
        var key = Key(token);
        if (!_tokens.TryGetValue(key, out var found))
        {
            problem = SenseData.TokenUnknown;
            return null;
        }

        var now = _time.GetUtcNow();
        if (found.ExpiresAt <= now)
        {
            _tokens.TryRemove(key, out _);
            problem = SenseData.TokenExpired;
            return null;
        }

        found.Touch(now);
        return found;
    }

    internal void Delete(ReadOnlySpan<byte> token) => _tokens.TryRemove(Key(token), out _);

    private static string Key(ReadOnlySpan<byte> token) => Convert.ToBase64String(token);
}

/// <summary>A run of logical blocks.</summary>
internal readonly record struct CopyRange(ulong Lba, uint Blocks);

/// <summary>What a ROD token stands for: ranges of one unit, and when it was last used.</summary>
internal sealed class RodToken(ScsiLogicalUnit source, CopyRange[] ranges, long blocks, TimeSpan inactivityTimeout, DateTimeOffset created)
{
    private long _lastUsedTicks = created.UtcTicks;

    public ScsiLogicalUnit Source { get; } = source;

    public CopyRange[] Ranges { get; } = ranges;

    public long Blocks { get; } = blocks;

    public TimeSpan InactivityTimeout { get; } = inactivityTimeout;

    /// <summary>SBC-3 5.9: the token lives until INACTIVITY TIMEOUT passes without a use.</summary>
    public DateTimeOffset ExpiresAt => new DateTimeOffset(Interlocked.Read(ref _lastUsedTicks), TimeSpan.Zero) + InactivityTimeout;

    public void Touch(DateTimeOffset now) => Interlocked.Exchange(ref _lastUsedTicks, now.UtcTicks);
}
