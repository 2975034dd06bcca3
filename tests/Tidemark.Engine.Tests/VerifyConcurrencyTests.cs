namespace Tidemark.Engine.Tests;

public class VerifyConcurrencyTests
{
    [Fact]
    public async Task Verify_WhileRunning_WritesAndFlushesGoOnAndItReportsTheStateItStartedFrom()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20, 4096);
        v.Write(0, Bytes.Pattern(4 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "s1");
        using var paused = new ManualResetEventSlim();
        using var resume = new ManualResetEventSlim();
        t.Pool.VerifyStarted = () =>
        {
            paused.Set();
            resume.Wait(TimeSpan.FromSeconds(30));
        };

        var verifying = Task.Run(() => t.Pool.Verify());
        Assert.True(paused.Wait(TimeSpan.FromSeconds(30)));

        // Mid-verify: overwrite what the snapshot shares (redirect, history, frees) and commit it.
        var writing = Task.Run(() =>
        {
            v.Write(1 << 20, Bytes.Pattern(2 << 20, 2), false);
            v.Write(40L << 20, Bytes.Pattern(1 << 20, 3), false);
            v.Unmap(0, 512 << 10);
            v.Flush();
        });
        var wroteDuringVerify = await Task.WhenAny(writing, Task.Delay(TimeSpan.FromSeconds(30))) == writing;
        resume.Set();
        var report = await verifying;
        await writing;
        t.Pool.VerifyStarted = null;

        Assert.True(wroteDuringVerify, "writes waited for verify");
        Assert.True(report.IsClean, string.Join("\n", report.Problems));
        t.AssertVerifyClean();
        Assert.Equal(Bytes.Pattern(2 << 20, 2), Bytes.Read(v, 1 << 20, 2 << 20));
    }
}
