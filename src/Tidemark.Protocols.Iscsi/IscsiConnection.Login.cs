using System.Buffers;
using Tidemark.Protocols.Iscsi.Pdus;

namespace Tidemark.Protocols.Iscsi;

public sealed partial class IscsiConnection
{
    private readonly IscsiSessionParameters _parameters;
    private readonly List<KeyValuePair<string, string>> _loginKeys = [];
    private readonly List<KeyValuePair<string, string>> _loginAnswers = [];
    private ArrayBufferWriter<byte>? _loginText;
    private bool _loginStarted;
    private bool _authRequired;
    private bool _authenticated;
    private bool _sentPortalGroupTag;
    private bool _sentMaxRecv;
    private ChapAuthenticator? _chap;
    private IscsiTarget? _target;
    private string? _initiatorName;
    private ulong _isid;
    private ushort _tsih;
    private int _loginPdus;

    /// <summary>Login PDUs accepted on one connection (continuations included) before it is refused.</summary>
    private const int MaxLoginPdus = 64;

    private void HandleLogin(in IscsiPdu pdu)
    {
        if (!LoginRequestPdu.TryRead(pdu.Header, out var request))
        {
            IscsiProtocolException.Throw(RejectReason.InvalidPduField, "malformed login request");
        }

        // A login needs a handful of PDUs; an endless one is refused rather than served forever.
        var status = ++_loginPdus > MaxLoginPdus ? LoginStatus.InitiatorError : LoginStatus.Success;
        if (status == LoginStatus.Success && !_loginStarted)
        {
            status = StartLogin(request);
        }

        if (status == LoginStatus.Success)
        {
            status = GatherLoginText(request, pdu.Data);
        }

        if (status != LoginStatus.Success)
        {
            FailLogin(request, status);
            return;
        }

        if (request.Continue)
        {
            // RFC 7143 6.2: the target acknowledges a partial text with an empty response.
            WriteLoginResponse(request, transit: false, LoginStatus.Success, []);
            return;
        }

        status = CheckLoginStage(request);
        if (status != LoginStatus.Success)
        {
            FailLogin(request, status);
            return;
        }

        NegotiateLoginKeys(request);

        // RFC 7143 11.12.3: transit only forward, and out of security only once authenticated.
        var transit = request.Transit
            && request.NextStage > request.CurrentStage
            && request.NextStage is LoginRequestPdu.OperationalNegotiation or LoginRequestPdu.FullFeaturePhase
            && (!_authRequired || _authenticated);
        if (transit && request.NextStage == LoginRequestPdu.FullFeaturePhase)
        {
            _parameters.Complete();
            _tsih = _catalog.NextTsih();
            WriteLoginResponse(request, transit: true, LoginStatus.Success, _loginAnswers);
            EnterFullFeaturePhase();
            return;
        }

        WriteLoginResponse(request, transit, LoginStatus.Success, _loginAnswers);
    }

    /// <summary>The first login PDU fixes the session's ISID and sequence numbers, and must ask for what this target speaks.</summary>
    private LoginStatus StartLogin(in LoginRequestPdu request)
    {
        _loginStarted = true;
        _isid = request.Isid;
        _expCmdSn = request.CmdSN;
        _statSn = request.ExpStatSN;

        // RFC 7143 11.12.4: this target speaks version 00h only.
        if (request.VersionMin > 0)
        {
            return LoginStatus.UnsupportedVersion;
        }

        // MaxConnections=1: a non-zero TSIH would add a connection to an existing session.
        return request.Tsih != 0 ? LoginStatus.SessionDoesNotExist : LoginStatus.Success;
    }

    /// <summary>Appends a PDU's text to the login's (a text may span PDUs), up to the text limit.</summary>
    private LoginStatus GatherLoginText(in LoginRequestPdu request, in ReadOnlySequence<byte> data)
    {
        _loginText ??= new ArrayBufferWriter<byte>();
        if (_loginText.WrittenCount + request.DataSegmentLengthBytes > _limits.MaxTextBytes)
        {
            return LoginStatus.OutOfResources;
        }

        data.CopyTo(_loginText.GetSpan(request.DataSegmentLengthBytes));
        _loginText.Advance(request.DataSegmentLengthBytes);
        return LoginStatus.Success;
    }

    /// <summary>
    /// Parses the gathered text into <see cref="_loginKeys"/>, identifies the initiator on its first
    /// complete text, and checks the stage: a known one, security not skipped when required, and the
    /// security stage's authentication.
    /// </summary>
    private LoginStatus CheckLoginStage(in LoginRequestPdu request)
    {
        _loginKeys.Clear();
        _loginAnswers.Clear();
        var parsed = TextParameters.TryParse(_loginText!.WrittenSpan, _loginKeys);
        _loginText.Clear();
        if (!parsed)
        {
            return LoginStatus.InitiatorError;
        }

        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in _loginKeys)
        {
            keys[key] = value;
        }

        if (_initiatorName is null && Identify(keys) is var identified && identified != LoginStatus.Success)
        {
            return identified;
        }

        if (request.CurrentStage is not (LoginRequestPdu.SecurityNegotiation or LoginRequestPdu.OperationalNegotiation))
        {
            return LoginStatus.InitiatorError;
        }

        // RFC 7143 6.3: skipping the security stage is not allowed when the target requires it.
        if (request.CurrentStage == LoginRequestPdu.OperationalNegotiation && _authRequired && !_authenticated)
        {
            return LoginStatus.AuthenticationFailure;
        }

        return request.CurrentStage == LoginRequestPdu.SecurityNegotiation && !Authenticate(keys, request.Transit)
            ? LoginStatus.AuthenticationFailure
            : LoginStatus.Success;
    }

    /// <summary>Answers the operational keys, plus the declarative ones this target states once.</summary>
    private void NegotiateLoginKeys(in LoginRequestPdu request)
    {
        foreach (var (key, value) in _loginKeys)
        {
            if (key is "AuthMethod" || key.StartsWith("CHAP_", StringComparison.Ordinal))
            {
                continue;
            }

            _parameters.Negotiate(key, value, _loginAnswers);
        }

        if (!_sentPortalGroupTag && _target is not null)
        {
            // RFC 7143 13.9: the target reports its portal group in the first login response.
            _sentPortalGroupTag = true;
            _loginAnswers.Add(new("TargetPortalGroupTag", _limits.TargetPortalGroupTag.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        if (request.CurrentStage == LoginRequestPdu.OperationalNegotiation && !_sentMaxRecv)
        {
            // RFC 7143 13.12: declarative, so we state what we accept once.
            _sentMaxRecv = true;
            _loginAnswers.Add(new("MaxRecvDataSegmentLength", _limits.MaxRecvDataSegmentBytes.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }
    }

    private LoginStatus Identify(Dictionary<string, string> keys)
    {
        // RFC 7143 13.4-13.6: InitiatorName always, TargetName for normal sessions, SessionType defaults to Normal.
        if (!keys.TryGetValue("InitiatorName", out var initiator) || initiator.Length == 0 || initiator.Length > IscsiName.MaxLengthBytes)
        {
            return LoginStatus.MissingParameter;
        }

        var type = keys.GetValueOrDefault("SessionType", "Normal");
        if (type == "Discovery")
        {
            _parameters.Discovery = true;
            _initiatorName = initiator;
            return LoginStatus.Success;
        }

        if (type != "Normal")
        {
            return LoginStatus.SessionTypeNotSupported;
        }

        if (!keys.TryGetValue("TargetName", out var targetName))
        {
            return LoginStatus.MissingParameter;
        }

        if (!_catalog.TryGetTarget(targetName, out var target))
        {
            return LoginStatus.NotFound;
        }

        if (!target.IsAllowed(initiator))
        {
            return LoginStatus.AuthorizationFailure;
        }

        _initiatorName = initiator;
        _target = target;
        var credentials = target.Definition.Chap;
        _authRequired = credentials is not null;
        _chap = credentials is null ? null : new ChapAuthenticator(credentials, target.Definition.MutualChap);
        return LoginStatus.Success;
    }

    /// <summary>RFC 7143 6.3.1 / 12.1: AuthMethod selection and the CHAP exchange; false on failure.</summary>
    private bool Authenticate(Dictionary<string, string> keys, bool transit)
    {
        if (keys.TryGetValue("AuthMethod", out var methods))
        {
            var offered = methods.Split(',');
            if (_authRequired && offered.Contains("CHAP"))
            {
                _loginAnswers.Add(new("AuthMethod", "CHAP"));
            }
            else if (!_authRequired && offered.Contains("None"))
            {
                _loginAnswers.Add(new("AuthMethod", "None"));
                _authenticated = true;
            }
            else
            {
                _loginAnswers.Add(new("AuthMethod", "Reject"));
                return false;
            }
        }

        if (!_authRequired)
        {
            _authenticated = true;
            return true;
        }

        if (keys.TryGetValue("CHAP_A", out var algorithms))
        {
            return _chap!.TryStart(algorithms, _loginAnswers);
        }

        if (keys.ContainsKey("CHAP_N") || keys.ContainsKey("CHAP_R"))
        {
            _authenticated = _chap!.TryVerify(keys, _loginAnswers);
            return _authenticated;
        }

        // The exchange is still under way: transit is simply not granted yet (libiscsi asks for it with
        // every security PDU); the login PDU cap bounds how long this may go on.
        _ = transit;
        return true;
    }

    private void WriteLoginResponse(in LoginRequestPdu request, bool transit, LoginStatus status, List<KeyValuePair<string, string>> answers)
    {
        var text = new ArrayBufferWriter<byte>();
        foreach (var (key, value) in answers)
        {
            TextParameters.Append(text, key, value);
        }

        var response = new LoginResponsePdu(
            transit,
            false,
            request.CurrentStage,
            transit ? request.NextStage : 0,
            text.WrittenCount,
            _isid,
            status == LoginStatus.Success ? _tsih : (ushort)0,
            request.InitiatorTaskTag,
            Sequence,
            status);
        response.WriteTo(_outHeader);
        _statSn++;
        SendPdu(text.WrittenSpan);
    }

    /// <summary>True when the login was refused for its credentials (CHAP, or no CHAP where the target requires it).</summary>
    public bool AuthenticationFailed { get; private set; }

    /// <summary>
    /// Raised on the connection's thread when a login is refused for its credentials, before the
    /// reject is sent: whoever throttles failed logins knows of it before the initiator does.
    /// </summary>
    public event Action<IscsiConnection>? AuthenticationFailure;

    private void FailLogin(in LoginRequestPdu request, LoginStatus status)
    {
        CloseReason = $"login rejected: {status}";
        if (status == LoginStatus.AuthenticationFailure)
        {
            AuthenticationFailed = true;
            AuthenticationFailure?.Invoke(this);
        }

        // RFC 7143 11.13.5: a login reject ends the connection.
        WriteLoginResponse(request, transit: false, status, []);
        _closing = true;
    }

    private void EnterFullFeaturePhase()
    {
        _fullFeature = true;

        // RFC 7143 13.1: digests apply from the first PDU after the final login response.
        _framing = new FramingSettings(_parameters.HeaderDigest, _parameters.DataDigest, _limits.MaxRecvDataSegmentBytes, _limits.MaxAhsBytes);
        _loginText = null;
    }
}
