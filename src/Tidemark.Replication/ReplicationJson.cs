using System.Text.Json;
using System.Text.Json.Serialization;

namespace Tidemark.Replication;

/// <summary>
/// The JSON of replication's control records (partners, replica state, receiver records; ADR 0011)
/// and of the older JSON files they are imported from. Replication's own format: the same settings
/// the server's config file uses, but owned here so the module needs nothing of the server.
/// </summary>
internal static class ReplicationJson
{
    /// <summary>Field names in camelCase, nulls written: the persisted layout the golden tests freeze.</summary>
    public static JsonSerializerOptions Records { get; } = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = false,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };
}
