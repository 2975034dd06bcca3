using System.Security.Cryptography;
using Tidemark.Api;

namespace Tidemark.Server.Tests.Infrastructure;

/// <summary>What replication tests do on two real servers: pair them, and hash a snapshot's whole image.</summary>
internal static class Pairing
{
    /// <summary>Pairs both ways: <paramref name="first"/> knows <paramref name="second"/> as <paramref name="secondName"/> and the other way round.</summary>
    public static async Task<(IdentityDto First, IdentityDto Second)> PairAsync(ServerProcess first, string secondName, ServerProcess second, string firstName)
    {
        using var a = first.Client();
        using var b = second.Client();
        var firstId = await a.GetIdentityAsync();
        var secondId = await b.GetIdentityAsync();
        await a.AddPartnerAsync(new AddPartnerRequest(secondName, secondId.ReplicationAddress!, secondId.Fingerprint));
        await b.AddPartnerAsync(new AddPartnerRequest(firstName, firstId.ReplicationAddress!, firstId.Fingerprint));
        return (firstId, secondId);
    }

    /// <summary>SHA-256 of a snapshot's whole image, read by nbdcopy through a temporary read-only NBD export.</summary>
    public static async Task<string> HashSnapshotAsync(ServerProcess server, string snapshot, string scratchDirectory)
    {
        using var client = server.Client();
        var name = $"hash-{Guid.NewGuid():N}";
        var export = await client.CreateExportAsync(new CreateExportRequest(snapshot, name, "nbd"));
        var file = Path.Combine(scratchDirectory, $"{name}.raw");
        try
        {
            (await ProcessRunner.RunAsync("nbdcopy", export.Url!, file)).AssertSuccess();
            await using var stream = File.OpenRead(file);
            return Convert.ToHexString(await SHA256.HashDataAsync(stream));
        }
        finally
        {
            await client.DeleteExportAsync(name);
            File.Delete(file);
        }
    }
}
