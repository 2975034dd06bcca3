using System.Runtime.Versioning;

// Unix file modes and symbolic links are part of what the store reader must get right.
[assembly: SupportedOSPlatform("linux")]
