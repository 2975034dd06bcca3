using System.IO.Pipelines;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// Standby exports: described at the primary, posted to the partner at each sync, brought up on promotion.
public sealed partial class ReplicaManager
{
    /// <summary>What each replica volume at the partner gets as standby exports (every member an entry, maybe empty).</summary>
    private Dictionary<string, List<CreateExportRequest>> ResolveStandby(ReplicaState state)
    {
        var members = state.IsGroup ? _book.Members(state).ToList() : [state.RemoteVolume];
        var result = members.ToDictionary(m => m, _ => new List<CreateExportRequest>(), StringComparer.Ordinal);
        foreach (var export in state.StandbyExports ?? [])
        {
            if (export.Protocol == "nbd")
            {
                foreach (var member in members)
                {
                    var name = export.Name is null ? member : state.IsGroup ? $"{export.Name}-{member}" : export.Name;
                    result[member].Add(new CreateExportRequest(member, name, "nbd"));
                }
            }
            else if (members.Count > 0)
            {
                result[members[0]].Add(new CreateExportRequest(
                    members[0],
                    export.Name ?? (state.IsGroup ? state.Volume : members[0]),
                    "iscsi",
                    AdditionalTargets: members.Count > 1 ? members[1..] : null,
                    Iqn: export.Iqn,
                    AllowedInitiators: export.AllowedInitiators));
            }
        }

        return result;
    }

    /// <summary>Tells the partner which exports to bring up when it promotes the replica (with every sync: it must know them before a disaster).</summary>
    private async Task SendStandbyAsync(HttpClient http, ReplicaState state, CancellationToken ct)
    {
        if (state.StandbyExports is null || state.Reverse)
        {
            return;
        }

        foreach (var (member, exports) in ResolveStandby(state))
        {
            using var response = await http.PostAsJsonAsync($"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(member)}/standby", exports, ApiJson.Options, ct);
            await PartnerLink.EnsureSuccessAsync(response, $"the partner did not take the standby exports of {member}", ct);
        }
    }

    /// <summary>Brings up the exports prepared for promoted volumes; says what came up and what could not (the promotion stands either way).</summary>
    private string? BringUpStandby(IEnumerable<string> volumes)
    {
        var lines = new List<string>();
        foreach (var volume in volumes)
        {
            foreach (var export in _receiver.StandbyExportsOf(volume) ?? [])
            {
                try
                {
                    var up = CreateExport?.Invoke(export) ?? throw new InvalidOperationException("no export registry");
                    lines.Add($"standby export {up.Name} ({up.Protocol}) is up{(up.Url is null ? "" : $": {up.Url}")}");
                }
                catch (StorageException ex)
                {
                    lines.Add($"standby export {export.Name} ({export.Protocol}) could not come up: {ex.Message}");
                }
            }
        }

        return lines.Count == 0 ? null : string.Join("; ", lines);
    }
}
