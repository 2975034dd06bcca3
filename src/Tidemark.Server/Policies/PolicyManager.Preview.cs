using Tidemark.Api;

namespace Tidemark.Server.Policies;

public sealed partial class PolicyManager
{
    /// <summary>
    /// What <paramref name="request"/>'s retention would keep and delete among the snapshots its target
    /// has now, decided by the same <see cref="Retention.Keep"/> and protection checks a policy run
    /// applies (the console's policy wizard shows it; nothing is changed). For an existing policy with
    /// the same target the rule covers the snapshots it made, exactly as its next run would; for a new
    /// one it covers all of them as if it had made them (<see cref="PolicyPreviewDto.AsIfOwned"/>).
    /// </summary>
    public PolicyPreviewDto Preview(PolicyRequest request)
    {
        lock (_lock)
        {
            var (_, zone) = Validate(request);
            var retention = new Retention(request.KeepLast, request.KeepHourly, request.KeepDaily, request.KeepWeekly, request.KeepMonthly);
            var all = TargetSnapshots(request, only: null);
            var owned = _policies.TryGetValue(request.Name, out var existing)
                && existing.Definition.Volume == request.Volume && existing.Definition.Group == request.Group
                    ? new HashSet<string>(existing.Snapshots.Where(all.ContainsKey), StringComparer.Ordinal)
                    : [];
            var asIfOwned = owned.Count == 0;
            var managed = asIfOwned ? all : all.Where(e => owned.Contains(e.Key)).ToDictionary(StringComparer.Ordinal);
            var keep = retention.Keep([.. managed.Select(e => (e.Key, e.Value[0].CreatedAt))], zone);
            var now = _time.GetUtcNow();
            var rows = new List<PolicyPreviewSnapshotDto>();
            foreach (var (name, members) in all.OrderByDescending(e => e.Value[0].CreatedAt).ThenByDescending(e => e.Key, StringComparer.Ordinal))
            {
                var address = Address(request, name);
                var createdAt = members[0].CreatedAt;
                if (!managed.ContainsKey(name))
                {
                    rows.Add(new(address, name, createdAt, "unmanaged", $"not made by policy {request.Name}, which deletes only its own snapshots"));
                }
                else if (keep.Contains(name))
                {
                    rows.Add(new(address, name, createdAt, "keep", null));
                }
                else if (Protection(members, now) is { } why)
                {
                    rows.Add(new(address, name, createdAt, "protected", why));
                }
                else
                {
                    rows.Add(new(address, name, createdAt, "drop", null));
                }
            }

            return new PolicyPreviewDto(asIfOwned, rows.Count(r => r.Verdict != "drop"), rows.Count(r => r.Verdict == "drop"), rows);
        }
    }
}
