using System.Globalization;
using System.Security.Cryptography;

namespace Tidemark.Protocols.Iscsi;

/// <summary>
/// Target side of CHAP with MD5 (RFC 7143 12.1.3, RFC 1994): the target sends CHAP_A=5, CHAP_I and
/// CHAP_C; the initiator answers CHAP_N and CHAP_R = MD5(I || secret || C), and for mutual CHAP
/// also sends its own CHAP_I/CHAP_C, which the target answers with its credentials.
/// </summary>
internal sealed class ChapAuthenticator
{
    /// <summary>RFC 7143 12.1.3: challenges should be long; 16 bytes matches the MD5 output.</summary>
    private const int ChallengeBytes = 16;

    /// <summary>RFC 7143 12.1.3: values longer than this are refused (binary values up to 1024 bytes).</summary>
    private const int MaxBinaryBytes = 1024;

    private readonly IscsiChapCredentials _credentials;
    private readonly IscsiChapCredentials? _mutual;
    private byte _identifier;
    private byte[]? _challenge;

    public ChapAuthenticator(IscsiChapCredentials credentials, IscsiChapCredentials? mutual)
    {
        _credentials = credentials;
        _mutual = mutual;
    }

    public bool ChallengeSent => _challenge is not null;

    /// <summary>CHAP_A: the initiator's list of algorithms; only 5 (MD5) is supported.</summary>
    public bool TryStart(string algorithms, List<KeyValuePair<string, string>> response)
    {
        if (!algorithms.Split(',').Contains("5"))
        {
            response.Add(new("CHAP_A", "Reject"));
            return false;
        }

        _identifier = (byte)RandomNumberGenerator.GetInt32(256);
        _challenge = RandomNumberGenerator.GetBytes(ChallengeBytes);
        response.Add(new("CHAP_A", "5"));
        response.Add(new("CHAP_I", _identifier.ToString(CultureInfo.InvariantCulture)));
        response.Add(new("CHAP_C", "0x" + Convert.ToHexStringLower(_challenge)));
        return true;
    }

    /// <summary>Checks CHAP_N/CHAP_R and answers a mutual challenge; false means authentication failure.</summary>
    public bool TryVerify(IReadOnlyDictionary<string, string> keys, List<KeyValuePair<string, string>> response)
    {
        if (_challenge is null
            || !keys.TryGetValue("CHAP_N", out var name)
            || !keys.TryGetValue("CHAP_R", out var responseText)
            || !TryDecodeBinary(responseText, out var received)
            || !string.Equals(name, _credentials.UserName, StringComparison.Ordinal))
        {
            return false;
        }

        var expected = ComputeResponse(_identifier, _credentials.Secret, _challenge);
        if (!CryptographicOperations.FixedTimeEquals(expected, received))
        {
            return false;
        }

        var wantsMutual = keys.TryGetValue("CHAP_I", out var idText) | keys.TryGetValue("CHAP_C", out var challengeText);
        if (_mutual is null)
        {
            return !wantsMutual;
        }

        if (!wantsMutual
            || !byte.TryParse(idText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var id)
            || !TryDecodeBinary(challengeText!, out var challenge)
            || challenge.Length == 0

            // RFC 7143 12.1.3: a challenge equal to ours is a reflection attack.
            || challenge.AsSpan().SequenceEqual(_challenge))
        {
            return false;
        }

        response.Add(new("CHAP_N", _mutual.UserName));
        response.Add(new("CHAP_R", "0x" + Convert.ToHexStringLower(ComputeResponse(id, _mutual.Secret, challenge))));
        return true;
    }

    public static byte[] ComputeResponse(byte identifier, string secret, ReadOnlySpan<byte> challenge)
    {
        var secretBytes = System.Text.Encoding.UTF8.GetBytes(secret);
        var input = new byte[1 + secretBytes.Length + challenge.Length];
        input[0] = identifier;
        secretBytes.CopyTo(input, 1);
        challenge.CopyTo(input.AsSpan(1 + secretBytes.Length));
#pragma warning disable CA5351 // RFC 7143 12.1.3 mandates MD5 for CHAP; it is the protocol, not our choice.
        return MD5.HashData(input);
#pragma warning restore CA5351
    }

    /// <summary>RFC 7143 6.1: binary values are 0x-prefixed hex or 0b-prefixed base64.</summary>
    public static bool TryDecodeBinary(string text, out byte[] value)
    {
        value = [];
        if (text.Length < 3 || text.Length > 2 + (MaxBinaryBytes * 2))
        {
            return false;
        }

        try
        {
            if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
            {
                var hex = text[2..];
                value = Convert.FromHexString(hex.Length % 2 == 1 ? "0" + hex : hex);
                return true;
            }

            if (text.StartsWith("0b", StringComparison.OrdinalIgnoreCase))
            {
                value = Convert.FromBase64String(text[2..]);
                return true;
            }
        }
        catch (FormatException)
        {
            return false;
        }

        return false;
    }
}
