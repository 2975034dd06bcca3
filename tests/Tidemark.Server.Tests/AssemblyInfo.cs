using System.Runtime.Versioning;

// The suite drives Debian's libnbd and qemu tools and POSIX signals: Linux only.
[assembly: SupportedOSPlatform("linux")]
