using System.Globalization;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// Operational parameters of one session/connection after login negotiation (RFC 7143 13). Starts
/// at the RFC defaults; <see cref="Negotiate"/> applies one initiator offer and answers it.
/// </summary>
public sealed class IscsiSessionParameters
{
    private readonly IscsiLimits _limits;

    public IscsiSessionParameters(IscsiLimits limits)
    {
        _limits = limits;
    }

    public bool HeaderDigest { get; private set; }

    public bool DataDigest { get; private set; }

    /// <summary>What the initiator accepts per PDU (declared by it; RFC 7143 13.12 default 8192).</summary>
    public int InitiatorMaxRecvDataSegmentBytes { get; private set; } = 8192;

    public int MaxBurstBytes { get; private set; } = 262144;

    public int FirstBurstBytes { get; private set; } = 65536;

    public bool InitialR2T { get; private set; } = true;

    public bool ImmediateData { get; private set; } = true;

    public int MaxOutstandingR2T { get; private set; } = 1;

    public int DefaultTime2Wait { get; private set; } = 2;

    public int DefaultTime2Retain { get; private set; } = 20;

    public bool Discovery { get; set; }

    /// <summary>Keys that have no meaning in a discovery session (RFC 7143 13, per-key "Irrelevant when").</summary>
    private static readonly HashSet<string> _sessionOnly = new(StringComparer.Ordinal)
    {
        "MaxConnections", "InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength",
        "MaxOutstandingR2T", "DataPDUInOrder", "DataSequenceInOrder",
    };

    /// <summary>Applies one operational key and adds the answer (if the key needs one) to <paramref name="response"/>.</summary>
    public void Negotiate(string key, string value, List<KeyValuePair<string, string>> response)
    {
        ArgumentNullException.ThrowIfNull(response);

        // RFC 7143 6.2: answers of the other side to our own offers need no reply.
        if (value is "NotUnderstood" or "Irrelevant" or "Reject")
        {
            return;
        }

        if (Discovery && _sessionOnly.Contains(key))
        {
            response.Add(new(key, "Irrelevant"));
            return;
        }

        switch (key)
        {
            case "HeaderDigest":
                HeaderDigest = ChooseDigest(value, out var header);
                response.Add(new(key, header));
                break;
            case "DataDigest":
                DataDigest = ChooseDigest(value, out var data);
                response.Add(new(key, data));
                break;
            case "MaxRecvDataSegmentLength":
                // Declarative (RFC 7143 13.12): 512 to 2^24-1; no answer, we declare ours separately.
                if (TryNumber(value, 512, 0xFF_FFFF, out var mrdsl))
                {
                    InitiatorMaxRecvDataSegmentBytes = mrdsl;
                }

                break;
            case "MaxBurstLength":
                Minimum(key, value, 512, 0xFF_FFFF, _limits.MaxBurstBytes, v => MaxBurstBytes = v, response);
                break;
            case "FirstBurstLength":
                Minimum(key, value, 512, 0xFF_FFFF, _limits.FirstBurstBytes, v => FirstBurstBytes = v, response);
                break;
            case "MaxOutstandingR2T":
                Minimum(key, value, 1, 65535, _limits.MaxOutstandingR2T, v => MaxOutstandingR2T = v, response);
                break;
            case "DefaultTime2Wait":
                if (TryNumber(value, 0, 3600, out var wait))
                {
                    DefaultTime2Wait = Math.Max(wait, 2);
                    response.Add(new(key, Text(DefaultTime2Wait)));
                }
                else
                {
                    response.Add(new(key, "Reject"));
                }

                break;
            case "DefaultTime2Retain":
                // ErrorRecoveryLevel 0 keeps no state after a connection ends: retain 0.
                Minimum(key, value, 0, 3600, 0, v => DefaultTime2Retain = v, response);
                break;
            case "ErrorRecoveryLevel":
                Minimum(key, value, 0, 2, 0, _ => { }, response);
                break;
            case "MaxConnections":
                Minimum(key, value, 1, 65535, 1, _ => { }, response);
                break;
            case "InitialR2T":
                // RFC 7143 13.10: result is OR.
                if (IsBoolean(value))
                {
                    InitialR2T = value == "Yes" || _limits.InitialR2T;
                    response.Add(new(key, InitialR2T ? "Yes" : "No"));
                }
                else
                {
                    response.Add(new(key, "Reject"));
                }

                break;
            case "ImmediateData":
                // RFC 7143 13.11: result is AND.
                if (IsBoolean(value))
                {
                    ImmediateData = value == "Yes" && _limits.ImmediateData;
                    response.Add(new(key, ImmediateData ? "Yes" : "No"));
                }
                else
                {
                    response.Add(new(key, "Reject"));
                }

                break;
            case "DataPDUInOrder":
            case "DataSequenceInOrder":
                // OR with our Yes: this target always wants data in order.
                response.Add(new(key, IsBoolean(value) ? "Yes" : "Reject"));
                break;
            case "IFMarker":
            case "OFMarker":
                // RFC 3720 markers (removed in RFC 7143): AND with our No.
                response.Add(new(key, "No"));
                break;
            case "IFMarkInt":
            case "OFMarkInt":
                response.Add(new(key, "Irrelevant"));
                break;
            case "InitiatorAlias":
            case "InitiatorName":
            case "TargetName":
            case "SessionType":
                break;
            default:
                response.Add(new(key, "NotUnderstood"));
                break;
        }
    }

    /// <summary>RFC 7143 13.14: FirstBurstLength must not exceed MaxBurstLength.</summary>
    public void Complete()
    {
        if (FirstBurstBytes > MaxBurstBytes)
        {
            FirstBurstBytes = MaxBurstBytes;
        }
    }

    private bool ChooseDigest(string offered, out string answer)
    {
        // RFC 7143 13.1: the first value of the initiator's list that we support.
        foreach (var item in offered.Split(','))
        {
            if (item == "None")
            {
                answer = "None";
                return false;
            }

            if (item == "CRC32C" && _limits.AllowDigests)
            {
                answer = "CRC32C";
                return true;
            }
        }

        answer = "Reject";
        return false;
    }

    private static void Minimum(string key, string value, int min, int max, int ours, Action<int> apply, List<KeyValuePair<string, string>> response)
    {
        if (!TryNumber(value, min, max, out var offered))
        {
            response.Add(new(key, "Reject"));
            return;
        }

        var result = Math.Min(offered, ours);
        apply(result);
        response.Add(new(key, Text(result)));
    }

    private static bool TryNumber(string value, int min, int max, out int result) =>
        int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out result) && result >= min && result <= max;

    private static bool IsBoolean(string value) => value is "Yes" or "No";

    private static string Text(int value) => value.ToString(CultureInfo.InvariantCulture);
}
