namespace Tidemark.Api;

public sealed partial class TidemarkClient
{
    // ---- hosts (agents, ADR 0015) ----

    public Task<IReadOnlyList<HostDto>> ListHostsAsync(CancellationToken ct = default) => GetAsync<IReadOnlyList<HostDto>>("hosts", ct);

    public Task<HostDto> AddHostAsync(AddHostRequest request, CancellationToken ct = default) => PostAsync<HostDto>("hosts", request, ct);

    public Task RemoveHostAsync(string name, CancellationToken ct = default) => DeleteAsync($"hosts/{Seg(name)}", ct);

    /// <summary>The PostgreSQL backup labels kept with a snapshot taken in backup mode (ADR 0015).</summary>
    public Task<BackupLabelsDto> GetBackupLabelsAsync(string address, CancellationToken ct = default) => GetAsync<BackupLabelsDto>(SnapshotPath(address) + "/backup-label", ct);

    /// <summary>Has the host's agent mount a view of the snapshot and check it; the snapshot comes back with its verification.</summary>
    public Task<SnapshotDto> VerifySnapshotAsync(string address, VerifySnapshotRequest request, CancellationToken ct = default) => PostAsync<SnapshotDto>(SnapshotPath(address) + "/verify", request, ct);

    /// <summary>Verifies every member's snapshot of a group's cut together on one host (a cluster's data and WAL on two volumes).</summary>
    public Task<IReadOnlyList<SnapshotDto>> VerifyGroupSnapshotAsync(string group, string snapshot, VerifySnapshotRequest request, CancellationToken ct = default) =>
        PostAsync<IReadOnlyList<SnapshotDto>>($"groups/{Seg(group)}/snapshots/{Seg(snapshot)}/verify", request, ct);

    /// <summary>Asks the host's agent, through the server, for its status and mounts.</summary>
    public Task<HostStatusDto> GetHostStatusAsync(string name, CancellationToken ct = default) => GetAsync<HostStatusDto>($"hosts/{Seg(name)}/status", ct);

    /// <summary>Records a finished (or failed) mail recovery from <paramref name="address"/> as an event under this token's name.</summary>
    public Task<EventDto> ReportMailRecoveryAsync(string address, RecoveryReportDto report, CancellationToken ct = default) =>
        PostAsync<EventDto>(SnapshotPath(address) + "/recoveries/mail", report, ct);
}
