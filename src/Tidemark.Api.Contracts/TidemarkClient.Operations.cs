using System.Globalization;
using System.Text;

namespace Tidemark.Api;

/// <summary>The operational resources: the event and audit log, jobs, metrics.</summary>
public sealed partial class TidemarkClient
{
    /// <summary>Events oldest first: after <paramref name="after"/> when given (paging forward), else the newest <paramref name="limit"/>.</summary>
    public Task<IReadOnlyList<EventDto>> ListEventsAsync(long? after = null, string? kind = null, string? subject = null, DateTimeOffset? since = null, int? limit = null, CancellationToken ct = default)
    {
        var query = new StringBuilder("events?");
        if (after is { } a)
        {
            query.Append(CultureInfo.InvariantCulture, $"after={a}&");
        }

        if (kind is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"kind={Uri.EscapeDataString(kind)}&");
        }

        if (subject is not null)
        {
            query.Append(CultureInfo.InvariantCulture, $"subject={Uri.EscapeDataString(subject)}&");
        }

        if (since is { } s)
        {
            query.Append(CultureInfo.InvariantCulture, $"since={Uri.EscapeDataString(s.ToString("O", CultureInfo.InvariantCulture))}&");
        }

        if (limit is { } l)
        {
            query.Append(CultureInfo.InvariantCulture, $"limit={l}&");
        }

        return GetAsync<IReadOnlyList<EventDto>>(query.ToString().TrimEnd('&', '?'), ct);
    }
}
