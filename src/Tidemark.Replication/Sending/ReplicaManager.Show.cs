using System.Net.Http.Json;
using Tidemark.Api;
using Tidemark.Engine;

namespace Tidemark.Replication;

// 'replica show' at the DR site: before a fail-back, whether home wrote after the common snapshot.
public sealed partial class ReplicaManager
{
    /// <summary>How long 'replica show' waits for the partner's answer about its writes: showing must never hang on a dead link.</summary>
    public static readonly TimeSpan PartnerWritesTimeout = TimeSpan.FromSeconds(3);

    /// <summary>
    /// One replica, as <see cref="Get"/>; for a promoted replica here that has not been sent back yet
    /// (no reverse sync done), also whether the site it would go back to wrote after the newest
    /// snapshot both share, asked over the link within <see cref="PartnerWritesTimeout"/> (a promoted
    /// replica without a reverse relationship is shown as state "promoted").
    /// </summary>
    public async Task<ReplicaDto> ShowAsync(string volume, CancellationToken cancellationToken)
    {
        ReplicaDto? shown = null;
        lock (_book.Lock)
        {
            if (_book.Replicas.TryGetValue(volume, out var state))
            {
                shown = ToDto(state);
                if (!state.Reverse || state.LastSnapshot is not null)
                {
                    return shown;
                }
            }
        }

        if (_receiver.FindIncoming(volume) is not { Promoted: true } incoming)
        {
            return shown ?? Get(volume);
        }

        shown ??= new ReplicaDto(volume, incoming.Partner, incoming.SourceVolume, null, null, null, 0, 0, 0, null, 0, null, State: "promoted");
        return shown with { PartnerWrites = await AskPartnerWritesAsync(volume, incoming, cancellationToken) };
    }

    /// <summary>What the partner says about its writes to <paramref name="incoming"/>'s source volume after the newest snapshot both share; never throws for a dead or refusing partner.</summary>
    private async Task<string> AskPartnerWritesAsync(string volume, IncomingReplicaDto incoming, CancellationToken cancellationToken)
    {
        var name = incoming.Partner;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(PartnerWritesTimeout);
        try
        {
            var partner = _partners.Get(name);
            using var http = PartnerLink.Create(_identity, partner, PartnerWritesTimeout);
            var remote = $"{PartnerLink.PathPrefix.TrimStart('/')}/volumes/{Uri.EscapeDataString(incoming.SourceVolume)}";
            List<RemoteSnapshotDto> theirs;
            using (var listed = await http.GetAsync($"{remote}/snapshots", timeout.Token))
            {
                await PartnerLink.EnsureSuccessAsync(listed, $"{name} did not list its snapshots", timeout.Token);
                theirs = await listed.Content.ReadFromJsonAsync<List<RemoteSnapshotDto>>(ApiJson.Options, timeout.Token) ?? [];
            }

            var ids = theirs.Select(s => s.Id).ToHashSet();
            if (_pool.ListSnapshots(volume).Where(s => ids.Contains(s.Id)).MaxBy(s => s.CreatedAt) is not { } common)
            {
                return $"unknown: {name} shares no snapshot of {volume} with this site any more; a reverse compares both copies by hash scan and is refused as split brain (unless --discard-writes-at home) if {name}'s copy is no longer the snapshot this site was promoted from";
            }

            using var response = await http.GetAsync($"{remote}/written-since/{common.Id}", timeout.Token);
            await PartnerLink.EnsureSuccessAsync(response, $"{name} could not compare its copy", timeout.Token);
            var written = await response.Content.ReadFromJsonAsync<WrittenSinceDto>(ApiJson.Options, timeout.Token)
                ?? throw new StorageException(StorageError.Unavailable, $"{name} sent an empty answer");
            return written.ChangedBytes == 0
                ? $"{name} has not written to {incoming.SourceVolume} since {common.Name}, the newest snapshot both sites share; a reverse needs no --discard-writes-at"
                : $"warning: split brain: {name} wrote to {incoming.SourceVolume} after {common.Name}, the newest snapshot both sites share ({written.ChangedBytes:N0} bytes changed there); 'tidemark replica reverse {volume}' is refused unless --discard-writes-at home, which reverts those writes there (kept as a pre-rollback-... snapshot)";
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return $"unknown, {name} unreachable ({(ex is OperationCanceledException ? $"no answer within {PartnerWritesTimeout.TotalSeconds:F0} s" : ex.Message)})";
        }
        catch (StorageException ex)
        {
            return $"unknown: {ex.Message}";
        }
    }
}
