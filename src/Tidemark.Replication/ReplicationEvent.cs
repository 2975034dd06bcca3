namespace Tidemark.Replication;

/// <summary>
/// Something replication did that belongs in the event and audit log (a sync, a scan, a promote,
/// a fail-back). The module raises it through the sink it was given; the server records it,
/// always with the server as the actor.
/// </summary>
public sealed record ReplicationEvent(string Kind, string Subject, string Message, string Outcome = "ok");
