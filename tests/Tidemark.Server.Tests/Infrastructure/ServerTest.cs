namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// A test class whose every test runs against a fresh `tidemark serve` over a temporary data
/// directory (xUnit makes an instance per test): started before the test, killed and its directory
/// removed after it, also when the test failed. A test may restart <see cref="Server"/> over the
/// same <see cref="Data"/>.
/// </summary>
public abstract class ServerTest : IAsyncLifetime
{
    private protected TempDirectory Temp { get; } = new();

    private protected ServerProcess Server { get; set; } = null!;

    /// <summary>The server's data directory.</summary>
    private protected string Data => Temp.Combine("data");

    public virtual async Task InitializeAsync() => Server = await ServerProcess.StartAsync(Data);

    public virtual async Task DisposeAsync()
    {
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }

        Temp.Dispose();
    }
}
