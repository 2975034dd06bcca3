using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Tidemark.Protocols.Iscsi;
using Tidemark.Protocols.Nbd;

namespace Tidemark.Server.Transport;

/// <summary>
/// Wires NBD and iSCSI onto Kestrel when `serve --protocol-transport` is kestrel or kestrel-splice
/// (measurement only: docs/adr/0010-protocol-transport.md). The listen options are kept so the
/// server can publish the bound ports, as it does for the hand-written listeners.
/// </summary>
internal sealed class KestrelProtocolHosting(ServerSettings settings)
{
    /// <summary>
    /// The environment variable that makes .NET complete socket operations on its epoll thread
    /// instead of queueing them to the thread pool; Kestrel's documentation pairs it with
    /// UnsafePreferInlineScheduling, and it is read once, at process start.
    /// </summary>
    public const string InlineCompletionsVariable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    public static bool IsSelected(ServerSettings settings) => settings.ProtocolTransport != ProtocolTransports.Native;

    public ListenOptions? Nbd { get; private set; }

    public ListenOptions? Iscsi { get; private set; }

    /// <summary>Registers the connection handlers and Kestrel's inline scheduling.</summary>
    public void AddServices(IServiceCollection services)
    {
        if (settings.ProtocolTransport == ProtocolTransports.KestrelSplice && Environment.GetEnvironmentVariable(InlineCompletionsVariable) == "1")
        {
            // NBD's splice and write-behind paths receive on the socket synchronously; .NET emulates
            // that on Kestrel's non-blocking socket by waiting for the epoll thread, which with inline
            // completions is the very thread waiting: the first large WRITE hangs every connection.
            throw new ArgumentException($"protocol-transport {ProtocolTransports.KestrelSplice} deadlocks with {InlineCompletionsVariable}=1; unset it, or use {ProtocolTransports.Kestrel}");
        }

        services.AddSingleton(this);

        // Requests are handled where the socket's data arrives, with no hop to the thread pool: the
        // scheduling DESIGN.md asks to compare against a plain socket loop. It also applies to the
        // HTTP API of this process, which is acceptable for a measurement mode.
        services.Configure<SocketTransportOptions>(o => o.UnsafePreferInlineScheduling = true);
        var limits = settings.ToConnectionLimits();
        if (!settings.NbdDisabled)
        {
            services.AddSingleton(sp => new KestrelNbdHandler(
                sp.GetRequiredService<ExportRegistry>().Catalog,
                sp.GetRequiredService<NbdServerOptions>(),
                limits,
                settings.ProtocolTransport == ProtocolTransports.KestrelSplice,
                sp.GetRequiredService<ClientSessions>(),
                sp.GetRequiredService<ILogger<KestrelNbdHandler>>()));
        }

        if (!settings.IscsiDisabled)
        {
            services.AddSingleton(new IscsiLimits());
            services.AddSingleton(sp => new KestrelIscsiHandler(
                sp.GetRequiredService<ExportRegistry>().IscsiCatalog,
                sp.GetRequiredService<IscsiLimits>(),
                limits,
                sp.GetRequiredService<ClientSessions>(),
                sp.GetRequiredService<ILogger<KestrelIscsiHandler>>()));
        }
    }

    /// <summary>Adds the NBD and iSCSI endpoints to Kestrel.</summary>
    public void Listen(KestrelServerOptions kestrel)
    {
        if (!settings.NbdDisabled)
        {
            kestrel.Listen(ServerSettings.ParseEndpoint(settings.Nbd, "nbd"), listen =>
            {
                Nbd = listen;
                listen.UseConnectionHandler<KestrelNbdHandler>();
            });
        }

        if (!settings.IscsiDisabled)
        {
            kestrel.Listen(ServerSettings.ParseEndpoint(settings.Iscsi, "iscsi"), listen =>
            {
                Iscsi = listen;
                listen.UseConnectionHandler<KestrelIscsiHandler>();
            });
        }
    }

    /// <summary>Says once at start what this mode does not do, so a measurement is read for what it is.</summary>
    public void LogDifferences(ILogger logger)
    {
        logger.LogWarning(
            "EXPERIMENTAL: NBD and iSCSI run on Kestrel's socket transport ({Mode}), for measurement only; not applied here: idle-timeout, receive-poll, nbd-socket, listener metrics",
            settings.ProtocolTransport);
        if (Environment.GetEnvironmentVariable(InlineCompletionsVariable) != "1")
        {
            logger.LogWarning("{Variable} is not 1: socket completions go through the thread pool; set it before starting to measure Kestrel's inline scheduling as intended", InlineCompletionsVariable);
        }
    }
}
