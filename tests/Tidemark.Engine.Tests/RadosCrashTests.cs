using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>
/// kill -9 of a process writing to a pool on RADOS: reopening (in this process, so the dead holder's
/// lock is broken at once) finds every durable write and acknowledged snapshot, and verify is clean.
/// </summary>
public class RadosCrashTests(CephCluster cluster) : IClassFixture<CephCluster>
{
    private static int Rounds => Environment.GetEnvironmentVariable("TIDEMARK_LONG") == "1" ? 10 : 2;

    [Fact]
    public void KillDuringLoad_ReopenHasEveryDurableWriteAndSnapshot()
    {
        var rng = new Random(22);
        for (var round = 0; round < Rounds; round++)
        {
            var seed = rng.Next();
            var dir = Path.Combine(Path.GetTempPath(), "tidemark-crash-" + Guid.NewGuid().ToString("N")[..10]);
            var logPath = dir + ".log";
            try
            {
                CrashTests.RunAndKill(dir, logPath, seed, TimeSpan.FromMilliseconds(1000 + rng.Next(1500)), cluster.Location());
                CrashTests.CheckAfterCrash(dir, logPath, seed);
            }
            finally
            {
                if (Directory.Exists(dir))
                {
                    Directory.Delete(dir, recursive: true);
                }

                File.Delete(logPath);
            }
        }
    }
}
