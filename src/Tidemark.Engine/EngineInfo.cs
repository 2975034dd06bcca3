namespace Tidemark.Engine;

/// <summary>Format versions of everything the engine persists; bumped when a layout changes.</summary>
public static class EngineInfo
{
    public const int PoolFormatVersion = 1;
}
