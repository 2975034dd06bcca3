using System.Diagnostics.Metrics;

namespace Tidemark.Server.Metrics;

/// <summary>
/// Marks the meters of one server instance (<see cref="Meter.Scope"/>). A process may hold several
/// servers (tests, a pair in one host) whose meters share names; the exporter of each server keeps
/// only the instruments of its own scope, so no server shows another's volumes.
/// </summary>
public sealed class MetricsScope
{
    public bool Owns(Instrument instrument) => ReferenceEquals(instrument.Meter.Scope, this);
}
