using System.Runtime.Versioning;

// Recovery mounts snapshots with nbdfuse, loop devices, mount and overlayfs: Linux only.
[assembly: SupportedOSPlatform("linux")]
