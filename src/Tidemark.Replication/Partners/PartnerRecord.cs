using Tidemark.Api;

namespace Tidemark.Replication;

/// <summary>
/// A paired server as persisted: a control record in the pool (kind "partner", version 1, named by
/// the partner; ADR 0011). Its own type, not the API's <see cref="PartnerDto"/>: the API may change
/// without a migration. The layout is that of an entry of DATA/partners.json of older versions, so
/// such a file imports as it is. Field names are persisted: never rename them (ControlRecordGoldenTests).
/// </summary>
/// <param name="Fingerprint">SHA-256 of the partner's replication certificate, 64 lower-case hex digits.</param>
public sealed record PartnerRecord(string Name, string Address, string Fingerprint, DateTimeOffset AddedAt)
{
    public static PartnerRecord From(PartnerDto p) => new(p.Name, p.Address, p.Fingerprint, p.AddedAt);

    public PartnerDto ToDto() => new(Name, Address, Fingerprint, AddedAt);
}
