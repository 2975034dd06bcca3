using System.Text;

namespace Tidemark.Api;

/// <summary>Stable problem-details codes: a <see cref="StorageError"/> name in kebab-case, plus the API's own.</summary>
public static class ErrorCodes
{
    public const string Unauthorized = "unauthorized";

    /// <summary>The token is valid but its role may not do this; the detail names the role needed.</summary>
    public const string Forbidden = "forbidden";
    public const string BadRequest = "bad-request";
    public const string Internal = "internal";
    public const string NotFound = "not-found";

    /// <summary>
    /// A job the request waited for was cancelled (by 'tidemark job cancel') before it finished;
    /// answered 409, as a conflict with that other request.
    /// </summary>
    public const string Cancelled = "cancelled";

    /// <summary>InvalidArgument becomes "invalid-argument".</summary>
    public static string For(StorageError error)
    {
        var name = error.ToString();
        var builder = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (char.IsUpper(name[i]) && i > 0)
            {
                builder.Append('-');
            }

            builder.Append(char.ToLowerInvariant(name[i]));
        }

        return builder.ToString();
    }
}
