using System.Text;

namespace Tidemark.Protocols.Nbd;

/// <summary>A device reachable over NBD under <see cref="Name"/>.</summary>
public sealed class NbdExport
{
    /// <summary>proto.md "Conventions": strings MUST be no longer than 4096 bytes.</summary>
    public const int MaxStringBytes = 4096;

    public NbdExport(string name, IBlockDevice device, string? description = null, bool readOnly = false)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(device);
        CheckString(name, nameof(name));
        CheckString(description ?? string.Empty, nameof(description));
        Name = name;
        Device = device;
        Description = description ?? string.Empty;
        ReadOnly = readOnly;
    }

    public string Name { get; }

    public IBlockDevice Device { get; }

    public string Description { get; }

    /// <summary>Exported read-only even if the device is writable.</summary>
    public bool ReadOnly { get; }

    public bool IsReadOnly => ReadOnly || Device.IsReadOnly;

    /// <summary>Only clients that upgraded with STARTTLS may use it (proto.md "selective TLS").</summary>
    public bool TlsRequired { get; init; }

    /// <summary>Changed-block tracking for this export (the <c>tidemark:changed:BASE</c> contexts); null: none.</summary>
    public IChangedBlocks? ChangedBlocks { get; init; }

    private static void CheckString(string value, string parameterName)
    {
        if (value.Contains('\0', StringComparison.Ordinal) || Encoding.UTF8.GetByteCount(value) > MaxStringBytes)
        {
            throw new ArgumentException($"NBD strings are UTF-8 without NUL and at most {MaxStringBytes} bytes", parameterName);
        }
    }
}
