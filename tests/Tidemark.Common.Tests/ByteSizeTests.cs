namespace Tidemark.Common.Tests;

public class ByteSizeTests
{
    [Theory]
    [InlineData("4096", 4096L)]
    [InlineData("4K", 4096L)]
    [InlineData("512M", 512L << 20)]
    [InlineData("10G", 10L << 30)]
    [InlineData("10GiB", 10L << 30)]
    [InlineData("1.5T", 3L << 39)]
    [InlineData(" 2g ", 2L << 30)]
    [InlineData("1P", 1L << 50)]
    [InlineData("100P", 100L << 50)]
    [InlineData("1.5P", 3L << 49)]
    public void Parse_ValidText_ReturnsBytes(string text, long expected) => Assert.Equal(expected, ByteSize.Parse(text));

    [Theory]
    [InlineData("")]
    [InlineData("G")]
    [InlineData("-1G")]
    [InlineData("1.00001K")]
    [InlineData("ten")]
    public void Parse_InvalidText_ThrowsInvalidArgument(string text)
    {
        var ex = Assert.Throws<StorageException>(() => ByteSize.Parse(text));
        Assert.Equal(StorageError.InvalidArgument, ex.Error);
    }

    [Theory]
    [InlineData(0L, "0")]
    [InlineData(4096L, "4K")]
    [InlineData(10L << 30, "10G")]
    [InlineData(1536L << 20, "1.5G")]
    public void Format_Bytes_ReadsLikeAnAdministratorWritesIt(long bytes, string expected) => Assert.Equal(expected, ByteSize.Format(bytes));
}
