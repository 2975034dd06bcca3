using Tidemark.TestKit;

namespace Tidemark.Engine.Tests;

/// <summary>
/// The one-node cluster (without the manager) that the outage tests share, RadosOsdFailureTests
/// and RadosMonitorFailureTests: one cluster start for both classes instead of one each. They kill
/// its daemons, so they run one at a time in one collection, and each test starts the daemon it
/// killed again before it ends (also when it fails), leaving the cluster whole for the next.
/// </summary>
public sealed class CephOutageCluster : CephClusterWithoutManager
{
    public const string Collection = "Ceph outages";

    /// <summary>Tries until it succeeds; the minute is a guard against a store that never recovers, not a timing claim.</summary>
    public static void Retry(Action action)
    {
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (true)
        {
            try
            {
                action();
                return;
            }
            catch (StorageException ex) when (ex.Error == StorageError.IoError && !ex.Message.Contains("offline", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
            {
                Thread.Sleep(250);
            }
        }
    }
}

[CollectionDefinition(CephOutageCluster.Collection)]
public sealed class CephOutageCollection : ICollectionFixture<CephOutageCluster>;
