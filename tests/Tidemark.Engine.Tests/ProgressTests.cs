using Tidemark.Engine;

namespace Tidemark.Engine.Tests;

/// <summary>Long engine operations report progress that ends at their total, and verify stops when cancelled.</summary>
public class ProgressTests
{
    [Fact]
    public void DeleteSnapshot_WithProgress_CountsEveryFreedRecordAgainstItsTotal()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        v.Write(0, Bytes.Pattern(4 << 20, 1), false);
        t.Pool.CreateSnapshot("vol", "old");
        v.Write(0, Bytes.Pattern(2 << 20, 2), false); // 512 blocks now only the snapshot sees
        var progress = new OperationProgress();

        t.Pool.DeleteSnapshot("vol@old", progress);

        Assert.Equal(1024, progress.Total); // a history record and its death-index entry per block
        Assert.Equal(progress.Total, progress.Done);
        t.AssertVerifyClean();
    }

    [Fact]
    public void DeleteVolume_WithProgress_CountsRecords()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        v.Write(0, Bytes.Pattern(4 << 20, 1), false);
        var progress = new OperationProgress();

        t.Pool.DeleteVolume("vol", progress);

        Assert.True(progress.Done > 0);
        Assert.Null(progress.Total);
        t.AssertVerifyClean();
    }

    [Fact]
    public void Verify_Cancelled_ThrowsAndPoolStaysUsable()
    {
        using var t = new TempPool();
        var v = t.Pool.CreateVolume("vol", 64L << 20);
        v.Write(0, Bytes.Pattern(4 << 20, 1), false);
        using var cancel = new CancellationTokenSource();
        cancel.Cancel();

        Assert.Throws<OperationCanceledException>(() => t.Pool.Verify(new OperationProgress(cancel.Token)));

        var progress = new OperationProgress();
        Assert.True(t.Pool.Verify(progress).IsClean);
        Assert.True(progress.Done > 0);
        Assert.NotNull(progress.Total);
        v.Write(0, Bytes.Pattern(4096, 3), false);
    }
}
