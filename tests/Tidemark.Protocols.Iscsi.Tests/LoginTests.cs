using System.Globalization;
using Tidemark.Protocols.Iscsi.Pdus;
using Tidemark.Protocols.Iscsi.Tests.TestHost;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class LoginTests
{
    [Fact]
    public async Task Login_NormalSession_NegotiatesOperationalKeys()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (security, securityKeys) = await initiator.LoginStepAsync(0, 1, true,
            ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Target), ("AuthMethod", "None"));
        Assert.Equal(LoginStatus.Success, security.Status);
        Assert.True(security.Transit);
        Assert.Equal("None", securityKeys["AuthMethod"]);
        Assert.Equal("1", securityKeys["TargetPortalGroupTag"]);

        var (op, keys) = await initiator.LoginStepAsync(1, 3, true,
            ("HeaderDigest", "None"), ("DataDigest", "None"), ("MaxBurstLength", "16776192"), ("FirstBurstLength", "262144"),
            ("InitialR2T", "No"), ("ImmediateData", "Yes"), ("MaxOutstandingR2T", "8"), ("ErrorRecoveryLevel", "2"),
            ("MaxConnections", "4"), ("DataPDUInOrder", "Yes"), ("DataSequenceInOrder", "Yes"), ("DefaultTime2Wait", "0"),
            ("DefaultTime2Retain", "20"), ("MaxRecvDataSegmentLength", "65536"), ("X-com.example.Unknown", "1"));

        Assert.Equal(LoginStatus.Success, op.Status);
        Assert.True(op.Transit);
        Assert.Equal(3, op.NextStage);
        Assert.NotEqual(0, op.Tsih);
        Assert.Equal("1048576", keys["MaxBurstLength"]);
        Assert.Equal("262144", keys["FirstBurstLength"]);
        Assert.Equal("No", keys["InitialR2T"]);
        Assert.Equal("Yes", keys["ImmediateData"]);
        Assert.Equal("4", keys["MaxOutstandingR2T"]);
        Assert.Equal("0", keys["ErrorRecoveryLevel"]);
        Assert.Equal("1", keys["MaxConnections"]);
        Assert.Equal("2", keys["DefaultTime2Wait"]);
        Assert.Equal("0", keys["DefaultTime2Retain"]);
        Assert.Equal("NotUnderstood", keys["X-com.example.Unknown"]);
        Assert.Equal((1024 * 1024).ToString(CultureInfo.InvariantCulture), keys["MaxRecvDataSegmentLength"]);
    }

    [Fact]
    public async Task Login_UnknownTarget_RejectsWithNotFoundAndCloses()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (response, _) = await initiator.LoginStepAsync(0, 1, true, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", "iqn.2026-11.dev.tidemark:nope"));

        Assert.Equal(LoginStatus.NotFound, response.Status);
        Assert.Null(await initiator.ReceiveAsync());
    }

    [Fact]
    public async Task Login_InitiatorNotOnAllowList_RejectsWithAuthorizationFailure()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (response, _) = await initiator.LoginStepAsync(0, 1, true, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Private));

        Assert.Equal(LoginStatus.AuthorizationFailure, response.Status);
        Assert.Null(await initiator.ReceiveAsync());
    }

    [Fact]
    public async Task Login_MissingInitiatorName_RejectsWithMissingParameter()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (response, _) = await initiator.LoginStepAsync(0, 1, true, ("TargetName", Catalogs.Target));

        Assert.Equal(LoginStatus.MissingParameter, response.Status);
    }

    [Fact]
    public async Task Login_SkipSecurityOnChapTarget_RejectsWithAuthenticationFailure()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (response, _) = await initiator.LoginStepAsync(1, 3, true, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Secured));

        Assert.Equal(LoginStatus.AuthenticationFailure, response.Status);
    }

    [Fact]
    public async Task Login_ChapWithRightSecret_ReachesFullFeaturePhase()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (_, method) = await initiator.LoginStepAsync(0, 1, false, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Secured), ("AuthMethod", "CHAP,None"));
        Assert.Equal("CHAP", method["AuthMethod"]);
        var (_, challenge) = await initiator.LoginStepAsync(0, 1, false, ("CHAP_A", "7,5"));
        Assert.Equal("5", challenge["CHAP_A"]);

        var response = ChapResponse(challenge, Catalogs.InitiatorSecret.Secret);
        var (done, _) = await initiator.LoginStepAsync(0, 1, true, ("CHAP_N", "alice"), ("CHAP_R", response));
        Assert.Equal(LoginStatus.Success, done.Status);
        Assert.True(done.Transit);

        var (full, _) = await initiator.LoginStepAsync(1, 3, true);
        Assert.Equal(LoginStatus.Success, full.Status);
        Assert.True(full.Transit);
    }

    [Fact]
    public async Task Login_ChapWithWrongSecret_RejectsWithAuthenticationFailure()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginStepAsync(0, 1, false, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Secured), ("AuthMethod", "CHAP"));
        var (_, challenge) = await initiator.LoginStepAsync(0, 1, false, ("CHAP_A", "5"));

        var (done, _) = await initiator.LoginStepAsync(0, 1, true, ("CHAP_N", "alice"), ("CHAP_R", ChapResponse(challenge, "wrong-secret!")));
        Assert.Equal(LoginStatus.AuthenticationFailure, done.Status);
        Assert.Null(await initiator.ReceiveAsync());
    }

    [Fact]
    public async Task Login_MutualChap_TargetProvesItsSecret()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginStepAsync(0, 1, false, ("InitiatorName", TestInitiator.InitiatorName), ("TargetName", Catalogs.Mutual), ("AuthMethod", "CHAP"));
        var (_, challenge) = await initiator.LoginStepAsync(0, 1, false, ("CHAP_A", "5"));
        byte[] ourChallenge = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];

        var (done, keys) = await initiator.LoginStepAsync(0, 1, true,
            ("CHAP_N", "alice"), ("CHAP_R", ChapResponse(challenge, Catalogs.InitiatorSecret.Secret)),
            ("CHAP_I", "77"), ("CHAP_C", "0x" + Convert.ToHexString(ourChallenge)));

        Assert.Equal(LoginStatus.Success, done.Status);
        Assert.Equal("target", keys["CHAP_N"]);
        var expected = ChapAuthenticator.ComputeResponse(77, Catalogs.TargetSecret.Secret, ourChallenge);
        Assert.Equal("0x" + Convert.ToHexStringLower(expected), keys["CHAP_R"]);
    }

    [Fact]
    public async Task Discovery_SendTargetsAll_ListsOnlyAllowedTargets()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (login, _) = await initiator.LoginStepAsync(0, 3, true, ("InitiatorName", TestInitiator.InitiatorName), ("SessionType", "Discovery"), ("AuthMethod", "None"));
        Assert.Equal(LoginStatus.Success, login.Status);

        var text = TestInitiator.Text(("SendTargets", "All"));
        var bhs = new byte[48];
        new TextRequestPdu(true, true, false, text.Length, 0, 2, 0xFFFFFFFF, initiator.CmdSN, initiator.ExpStatSN).WriteTo(bhs);
        await initiator.SendAsync(bhs, text);
        var reply = await initiator.ReceiveAsync();

        Assert.True(TextResponsePdu.TryRead(reply!.Value.Header, out var response));
        Assert.True(response.Final);
        var names = TestInitiator.ParseText(reply.Value.Data)["TargetName"].Split('|');
        Assert.Contains(Catalogs.Target, names);
        Assert.Contains(Catalogs.Secured, names);
        Assert.DoesNotContain(Catalogs.Private, names);
        Assert.Contains("127.0.0.1:3260,1", TestInitiator.ParseText(reply.Value.Data)["TargetAddress"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Login_DigestsNegotiated_NopPingWorksWithDigests()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        var (_, keys) = await initiator.LoginAsync(Catalogs.Target, ("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C"));
        Assert.Equal("CRC32C", keys["HeaderDigest"]);
        Assert.Equal("CRC32C", keys["DataDigest"]);
        initiator.HeaderDigest = true;
        initiator.DataDigest = true;

        var bhs = new byte[48];
        new NopOutPdu(true, 3, 0, 0x55, 0xFFFFFFFF, initiator.CmdSN, initiator.ExpStatSN).WriteTo(bhs);
        await initiator.SendAsync(bhs, new byte[] { 1, 2, 3 });
        var reply = await initiator.ReceiveAsync();

        Assert.True(NopInPdu.TryRead(reply!.Value.Header, out var nop));
        Assert.Equal(0x55u, nop.InitiatorTaskTag);
        Assert.Equal(new byte[] { 1, 2, 3 }, reply.Value.Data);
    }

    [Fact]
    public async Task Logout_CloseSession_RespondsAndCloses()
    {
        await using var initiator = new TestInitiator(Catalogs.Create(out _));
        await initiator.LoginAsync(Catalogs.Target);
        var bhs = new byte[48];
        new LogoutRequestPdu(true, 0, 9, 0, initiator.CmdSN, initiator.ExpStatSN).WriteTo(bhs);
        await initiator.SendAsync(bhs);

        var reply = await initiator.ReceiveAsync();
        Assert.True(LogoutResponsePdu.TryRead(reply!.Value.Header, out var logout));
        Assert.Equal(0, logout.Response);
        Assert.Null(await initiator.ReceiveAsync());
    }

    private static string ChapResponse(Dictionary<string, string> challenge, string secret)
    {
        var id = byte.Parse(challenge["CHAP_I"], CultureInfo.InvariantCulture);
        Assert.True(ChapAuthenticator.TryDecodeBinary(challenge["CHAP_C"], out var c));
        return "0x" + Convert.ToHexString(ChapAuthenticator.ComputeResponse(id, secret, c));
    }
}
