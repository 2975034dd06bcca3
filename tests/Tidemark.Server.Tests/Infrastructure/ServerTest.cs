using Tidemark.Api;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>
/// A test class whose every test runs against a fresh `tidemark serve` over a temporary data
/// directory (xUnit makes an instance per test): started before the test, stopped (SIGTERM, killed
/// if it does not stop) and its directory removed after it, also when the test failed. A test may
/// restart <see cref="Server"/> over the same <see cref="Data"/>; a crash test kills it itself.
/// </summary>
public abstract class ServerTest : IAsyncLifetime
{
    private TidemarkClient? _client;
    private ServerProcess? _clientOf;

    private protected TempDirectory Temp { get; } = new();

    private protected ServerProcess Server { get; set; } = null!;

    /// <summary>An API client of the current <see cref="Server"/> (a new one after a restart), disposed with the test.</summary>
    private protected TidemarkClient Client
    {
        get
        {
            if (_client is null || _clientOf != Server)
            {
                _client?.Dispose();
                _client = Server.Client();
                _clientOf = Server;
            }

            return _client;
        }
    }

    /// <summary>The server's data directory.</summary>
    private protected string Data => Temp.Combine("data");

    /// <summary>Options the class's server starts with, beyond ServerProcess's defaults (which they may replace).</summary>
    private protected virtual string[] ServerArguments => [];

    public virtual async Task InitializeAsync() => Server = await ServerProcess.StartAsync(Data, ServerArguments);

    public virtual async Task DisposeAsync()
    {
        _client?.Dispose();
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }

        Temp.Dispose();
    }
}
