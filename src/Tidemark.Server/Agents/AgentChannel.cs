using Microsoft.Extensions.Logging;
using Tidemark.Engine;
using Tidemark.Server.Replication;
using EventLog = Tidemark.Server.Events.EventLog;

namespace Tidemark.Server.Agents;

/// <summary>
/// What a server service needs to have a host's agent work on a snapshot: the pool (to make a
/// throwaway view of it), the exports (to make the view reachable), the paired hosts and the
/// server's identity (to call an agent over mutual TLS), the event log, the agents' logger and the
/// clock. Built and registered once, so the verifier, the mail recovery, the mail indexer, and any
/// later service of their kind, take this one argument instead of copying seven.
/// </summary>
public sealed class AgentChannel(Pool pool, ExportRegistry exports, HostRegistry hosts, ServerIdentity identity, EventLog events, ILogger logger, TimeProvider time)
{
    /// <summary>The logger category of every agent-side service's lines.</summary>
    public const string LoggerCategory = "Tidemark.Agents";

    public Pool Pool => pool;

    public ExportRegistry Exports => exports;

    public HostRegistry Hosts => hosts;

    public EventLog Events => events;

    public ILogger Logger => logger;

    public TimeProvider Time => time;

    /// <summary>Deletes a throwaway view and every export of it (a leftover of a stopped server: nothing else uses it).</summary>
    public void DeleteViewWithExports(string view)
    {
        foreach (var export in exports.ExportsOfVolume(view))
        {
            exports.Delete(export);
        }

        pool.DeleteVolume(view);
    }

    /// <summary>A link to <paramref name="host"/>'s agent that presents this server's certificate; calls longer than <paramref name="timeout"/> fail.</summary>
    public AgentLink Open(HostRecord host, TimeSpan timeout) => new(identity, host, timeout);
}
