using System.Globalization;

namespace Tidemark.Engine.Storage;

/// <summary>
/// Where a RADOS store lives: <c>rados:POOL[/PREFIX][?conf=FILE&amp;id=USER&amp;timeout=SECONDS]</c>
/// (ADR 0017). The canonical string is the store record's path, so a reopen finds the same cluster,
/// user and objects.
/// </summary>
public sealed record RadosLocation(string Pool, string Prefix, string ConfPath, string User, int TimeoutSeconds)
{
    public const string Scheme = "rados:";
    public const string DefaultPrefix = "tidemark";
    public const string DefaultConf = "/etc/ceph/ceph.conf";
    public const string DefaultUser = "admin";
    public const int DefaultTimeoutSeconds = 30;

    public static bool IsRados(string path) => path.StartsWith(Scheme, StringComparison.Ordinal);

    /// <summary>Parses a location; every malformed part is an InvalidArgument that says what a good one looks like.</summary>
    public static RadosLocation Parse(string location)
    {
        if (!IsRados(location))
        {
            throw Invalid(location, "it does not start with 'rados:'");
        }

        var rest = location[Scheme.Length..];
        var query = "";
        var q = rest.IndexOf('?', StringComparison.Ordinal);
        if (q >= 0)
        {
            query = rest[(q + 1)..];
            rest = rest[..q];
        }

        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        var pool = slash >= 0 ? rest[..slash] : rest;
        var prefix = slash >= 0 ? rest[(slash + 1)..] : DefaultPrefix;
        if (!IsName(pool))
        {
            throw Invalid(location, "the RADOS pool name is empty or has characters other than letters, digits, '-', '_' and '.'");
        }

        if (!IsName(prefix))
        {
            throw Invalid(location, "the object prefix after '/' is empty or has characters other than letters, digits, '-', '_' and '.'");
        }

        string conf = DefaultConf, user = DefaultUser;
        var timeout = DefaultTimeoutSeconds;
        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            var key = eq >= 0 ? pair[..eq] : pair;
            var value = eq >= 0 ? pair[(eq + 1)..] : "";
            switch (key)
            {
                case "conf" when value.Length > 0 && value.IndexOfAny(['\0', '&', '?']) < 0:
                    conf = value;
                    break;
                case "id" when IsName(value):
                    user = value.StartsWith("client.", StringComparison.Ordinal) ? value["client.".Length..] : value;
                    break;
                case "timeout" when int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds is >= 1 and <= 3600:
                    timeout = seconds;
                    break;
                default:
                    throw Invalid(location, $"'{pair}' is not one of conf=FILE, id=USER or timeout=SECONDS (1-3600)");
            }
        }

        return new RadosLocation(pool, prefix, conf, user, timeout);
    }

    /// <summary>The location with every part spelled out and the conf file made absolute (the server reads it later, from anywhere).</summary>
    public override string ToString() =>
        $"{Scheme}{Pool}/{Prefix}?conf={ConfPath}&id={User}&timeout={TimeoutSeconds.ToString(CultureInfo.InvariantCulture)}";

    public RadosLocation WithAbsoluteConf() => this with { ConfPath = Path.GetFullPath(ConfPath) };

    /// <summary>The object that holds bytes [n * ObjectBytes, (n+1) * ObjectBytes) of the store.</summary>
    public string DataObject(long number) => $"{Prefix}.data.{number:x16}";

    public string LockObject => $"{Prefix}.lock";

    private static bool IsName(string s) =>
        s.Length is > 0 and <= 200 && s.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static StorageException Invalid(string location, string why) =>
        new(StorageError.InvalidArgument, $"'{location}' is not a RADOS store location: {why}; write rados:POOL[/PREFIX][?conf=/etc/ceph/ceph.conf&id=admin&timeout=30]");
}
