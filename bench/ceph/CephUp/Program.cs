using Tidemark.TestKit;

// Starts the tests' one-node Ceph cluster (one implementation of bringing it up: TestKit's
// CephCluster), prints "conf PATH" once the pool takes writes, and tears it down when standard
// input closes or says anything. For the benchmark scripts in bench/ceph.
using var cluster = new CephCluster();
Console.WriteLine($"conf {cluster.ConfPath}");
Console.WriteLine($"pool {CephCluster.PoolName}");
Console.WriteLine($"started {cluster.StartupTime.TotalSeconds:F1}");
Console.Out.Flush();
Console.In.ReadLine();
return 0;
