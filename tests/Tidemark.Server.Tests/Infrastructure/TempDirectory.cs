namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>A directory under /tmp that is removed with everything in it when the test ends.</summary>
internal sealed class TempDirectory : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("tidemark-server-").FullName;

    public string Combine(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // A process we killed may still be releasing a file; /tmp is cleaned eventually.
        }
    }
}
