using System.Runtime.Versioning;

// The suite mounts real file systems through nbdfuse, loop devices and Debian's PostgreSQL: Linux only.
[assembly: SupportedOSPlatform("linux")]

// Each test runs a server, FUSE mounts, loop devices and file systems on a shared 2-core machine;
// running them one at a time keeps their run time bounded and their failures readable.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
