namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>A home site and a DR site, two real servers retrying replication every 100 ms, started per test.</summary>
public abstract class TwoSiteTests : IAsyncLifetime
{
    private protected TwoServers Sites { get; private set; } = null!;

    private protected ServerProcess Home => Sites.Primary;

    private protected ServerProcess Dr => Sites.Dr;

    public async Task InitializeAsync() => Sites = await TwoServers.StartAsync("--replication-retry-delay", "100ms");

    public async Task DisposeAsync() => await Sites.DisposeAsync();
}
