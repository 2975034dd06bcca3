using Tidemark.Agent;
using Tidemark.Api;

namespace Tidemark.Server.Tests;

/// <summary>How the agent finds a volume attached through nbdfuse without a declaration (ADR 0015).</summary>
public sealed class NbdFuseAttachmentsTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    [Theory]
    [InlineData("/mnt/fuse/disk nbd://127.0.0.1:10809/vol", "/mnt/fuse/disk", "nbd://127.0.0.1:10809/vol")]
    [InlineData("-r -C 4 -P /run/p.pid -o allow_other /mnt/f nbd://h/vol", "/mnt/f", "nbd://h/vol")]
    [InlineData("--connections 2 /mnt/f nbds+unix:///vol?socket=/run/tm.sock", "/mnt/f", "nbds+unix:///vol?socket=/run/tm.sock")]
    public void Parse_UriMode_GivesPathAndUri(string commandLine, string path, string uri)
    {
        Assert.Equal((path, uri), NbdFuseAttachments.Parse(["nbdfuse", .. commandLine.Split(' ')]));
    }

    [Theory]
    [InlineData("/mnt/f --tcp 127.0.0.1 10809")]
    [InlineData("/mnt/f --unix /run/s")]
    [InlineData("/mnt/f [ nbdkit memory 1G ]")]
    [InlineData("/mnt/f --command nbdkit -s memory 1G")]
    [InlineData("/mnt/f /not/a/uri")]
    [InlineData("/mnt/f")]
    public void Parse_OtherModes_NoExport(string commandLine)
    {
        Assert.Null(NbdFuseAttachments.Parse(["nbdfuse", .. commandLine.Split(' ')]));
    }

    [Theory]
    [InlineData("nbd://127.0.0.1:4000/vol", "nbd://127.0.0.1:4000/vol", true)]
    [InlineData("nbd://localhost:4000/vol", "nbd://127.0.0.1:4000/vol", true)]
    [InlineData("nbd://192.0.2.7:4000/vol", "nbd://0.0.0.0:4000/vol", true)]
    [InlineData("nbds://SERVER.example:4000/vol", "nbd://server.example:4000/vol", true)]
    [InlineData("nbd://server.example/vol", "nbd://server.example:10809/vol", true)]
    [InlineData("nbd://127.0.0.1:4000/vol%40s1", "nbd://127.0.0.1:4000/vol@s1", true)]
    [InlineData("nbd+unix:///vol?socket=/run/tm/nbd.sock", "nbd+unix:///vol?socket=/run/tm/nbd.sock", true)]
    [InlineData("nbd://127.0.0.1:4000/vol", "nbd://127.0.0.1:4001/vol", false)]
    [InlineData("nbd://127.0.0.1:4000/vol", "nbd://127.0.0.1:4000/vol2", false)]
    [InlineData("nbd://192.0.2.7:4000/vol", "nbd://192.0.2.8:4000/vol", false)]
    [InlineData("nbd://127.0.0.1:4000/vol", "nbd+unix:///vol?socket=/run/tm/nbd.sock", false)]
    [InlineData("nbd+unix:///vol?socket=/run/a.sock", "nbd+unix:///vol?socket=/run/b.sock", false)]
    [InlineData("http://127.0.0.1:4000/vol", "nbd://127.0.0.1:4000/vol", false)]
    public void Matches_SameExportNamePortAndHost(string client, string export, bool expected)
    {
        Assert.Equal(expected, NbdFuseAttachments.Matches(client, export));
    }

    [Fact]
    public void Discover_ReadsNbdfuseCommandLines_RelativePathsFromTheirWorkingDirectory()
    {
        var proc = _temp.CreateDirectory("proc");
        Process(proc, 100, null, "nbdfuse", "/srv/fuse/disk", "nbd://127.0.0.1:4000/db");
        Process(proc, 101, "/home/ops", "/usr/bin/nbdfuse", "-r", "mnt", "nbd://127.0.0.1:4000/mail");
        Process(proc, 102, null, "nbdkit", "memory", "1G");
        Process(proc, 103, null, "nbdfuse", "/srv/other", "--tcp", "127.0.0.1", "4000");
        Directory.CreateDirectory(Path.Combine(proc, "self"));

        var found = NbdFuseAttachments.Discover(proc);

        Assert.Equal("nbd://127.0.0.1:4000/db", found["/srv/fuse/disk"]);
        Assert.Equal("nbd://127.0.0.1:4000/mail", found["/home/ops/mnt/nbd"]);
        Assert.Equal("nbd://127.0.0.1:4000/mail", found["/home/ops/mnt"]);
        Assert.DoesNotContain(found.Keys, k => k.StartsWith("/srv/other", StringComparison.Ordinal));
        Assert.Equal(4, found.Count);
    }

    [Fact]
    public void Attached_UndeclaredMountOnAnExport_MapsToItsVolume_DeclarationsAndAmbiguityLeftAlone()
    {
        AgentMountDto Mount(string path, string? volume, string? uri) => new(path, "ext4", "/dev/loop0", volume, "/f", true, uri);
        var mounts = new[]
        {
            Mount("/srv/db", null, "nbd://localhost:4000/db"),
            Mount("/srv/declared", "mail", "nbd://127.0.0.1:4000/declared-elsewhere"),
            Mount("/srv/both", null, "nbd://127.0.0.1:4000/shared"),
            Mount("/srv/none", null, null),
            Mount("/srv/unknown", null, "nbd://127.0.0.1:4000/unknown"),
        };
        VolumeAttachmentDto[] attachments =
        [
            new("db", "nbd://127.0.0.1:4000/db"),
            new("db", "nbd+unix:///db?socket=/run/tm.sock"),
            new("mail", "nbd://127.0.0.1:4000/declared-elsewhere"),
            new("a", "nbd://127.0.0.1:4000/shared"),
            new("b", "nbd://127.0.0.1:4000/shared"),
        ];

        var attached = NbdFuseAttachments.Attached(mounts, attachments);

        Assert.Equal([new AgentMountEntry("/srv/db", "db")], attached);
        Assert.Empty(NbdFuseAttachments.Attached(mounts, null));
        var scope = new QuiesceScope(new HashSet<string> { "db" }, attached);
        var config = new AgentConfig { Mounts = [new AgentMountEntry("/srv/declared", "mail")] };
        Assert.Equal("db", scope.Apply(config).VolumeOf("/srv/db/base/1"));
        Assert.Equal("mail", scope.Apply(config).VolumeOf("/srv/declared"));
        Assert.Same(config, new QuiesceScope(new HashSet<string> { "db" }, []).Apply(config));
    }

    private static void Process(string proc, int pid, string? cwd, params string[] arguments)
    {
        var directory = Directory.CreateDirectory(Path.Combine(proc, pid.ToString(System.Globalization.CultureInfo.InvariantCulture))).FullName;
        File.WriteAllText(Path.Combine(directory, "cmdline"), string.Join('\0', arguments) + "\0");
        if (cwd is not null)
        {
            File.CreateSymbolicLink(Path.Combine(directory, "cwd"), cwd);
        }
    }
}
