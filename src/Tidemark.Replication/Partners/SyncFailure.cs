namespace Tidemark.Replication;

/// <summary>
/// What a failed attempt to reach a partner means: a refusal (the partner decided; another attempt
/// gets the same answer) or a broken link (retried, and the next sync continues the transfer).
/// </summary>
internal static class SyncFailure
{
    /// <summary>The partner refused (<see cref="PartnerRefusedException"/>, or any 4xx answer): not retried.</summary>
    public static bool IsRefusal(Exception ex) =>
        ex is PartnerRefusedException || ex is HttpRequestException { StatusCode: { } status } && (int)status is >= 400 and < 500;

    /// <summary>The messages down an exception's chain ("An error occurred while sending the request" alone says nothing).</summary>
    public static string Describe(Exception ex)
    {
        var messages = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (!messages.Contains(e.Message))
            {
                messages.Add(e.Message);
            }
        }

        return string.Join(": ", messages);
    }

    /// <summary>The TLS handshake failed on authentication: the partner does not know this server.</summary>
    public static bool IsRefusedHandshake(Exception ex)
    {
        for (var e = ex.InnerException; e is not null; e = e.InnerException)
        {
            if (e is System.Security.Authentication.AuthenticationException)
            {
                return true;
            }
        }

        return false;
    }
}
