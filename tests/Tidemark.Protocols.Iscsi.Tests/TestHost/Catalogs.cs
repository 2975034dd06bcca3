using Tidemark.TestKit;

namespace Tidemark.Protocols.Iscsi.Tests.TestHost;

internal static class Catalogs
{
    public const string Target = "iqn.2026-11.dev.tidemark:disk";
    public const string Private = "iqn.2026-11.dev.tidemark:private";
    public const string Secured = "iqn.2026-11.dev.tidemark:secured";
    public const string Mutual = "iqn.2026-11.dev.tidemark:mutual";

    public static IscsiChapCredentials InitiatorSecret { get; } = new("alice", "alice-secret-12");

    public static IscsiChapCredentials TargetSecret { get; } = new("target", "target-secret-1");

    public static IscsiTargetCatalog Create(out MemoryBlockDevice device)
    {
        device = new MemoryBlockDevice(16L << 20);
        var catalog = new IscsiTargetCatalog();
        catalog.AddOrUpdate(new IscsiTargetDefinition(Target, [new IscsiLunDefinition(0, device)]));
        catalog.AddOrUpdate(new IscsiTargetDefinition(Private, [new IscsiLunDefinition(0, new MemoryBlockDevice(1 << 20))])
        {
            AllowedInitiators = ["iqn.2026-11.dev.tidemark:someone-else"],
        });
        catalog.AddOrUpdate(new IscsiTargetDefinition(Secured, [new IscsiLunDefinition(0, new MemoryBlockDevice(1 << 20))])
        {
            Chap = InitiatorSecret,
        });
        catalog.AddOrUpdate(new IscsiTargetDefinition(Mutual, [new IscsiLunDefinition(0, new MemoryBlockDevice(1 << 20))])
        {
            Chap = InitiatorSecret,
            MutualChap = TargetSecret,
        });
        return catalog;
    }
}
