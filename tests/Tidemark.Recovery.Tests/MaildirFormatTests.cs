using Tidemark.Recovery.Mail;

namespace Tidemark.Recovery.Tests;

public sealed class MaildirFormatTests
{
    [Fact]
    public void Parse_DovecotNameWithFlagsAndKeywords_SizeFlagsAndKeywordIndexes()
    {
        var name = MaildirFileName.Parse("1795534881.M43940P30421.vm,S=602,W=622:2,FSac");

        Assert.Equal(602, name.SizeBytes);
        Assert.Equal([@"\Flagged", @"\Seen"], name.Flags);
        Assert.Equal([0, 2], name.KeywordIndexes);
    }

    [Fact]
    public void Parse_NewMessageWithoutInfo_NoFlagsAndNoSize()
    {
        var name = MaildirFileName.Parse("1795534881.M43940P30421.vm");

        Assert.Null(name.SizeBytes);
        Assert.Empty(name.Flags);
        Assert.Empty(name.KeywordIndexes);
    }

    [Fact]
    public void Parse_AllFlagLettersAndUnknownOnes_MapsTheImapFlagsOnly()
    {
        var name = MaildirFileName.Parse("1.2.host,S=notanumber:2,DFPRST!");

        Assert.Null(name.SizeBytes);
        Assert.Equal([@"\Draft", @"\Flagged", @"\Answered", @"\Seen", @"\Deleted"], name.Flags);
    }

    [Fact]
    public void ParseKeywords_DovecotKeywordsFile_IndexToNameIgnoringJunk()
    {
        var names = MaildirFileName.ParseKeywords(["0 $Label1", "2 $Important", "x junk", "30 out-of-range", "5", ""]);

        Assert.Equal(new Dictionary<int, string> { [0] = "$Label1", [2] = "$Important" }, names);
    }

    [Theory]
    [InlineData("Sent", "Sent")]
    [InlineData("&AMk-t&AOk-", "Été")]
    [InlineData("R&AOk-sum&AOk-s", "Résumés")]
    [InlineData("Tom &- Jerry", "Tom & Jerry")]
    [InlineData("&ZeVnLIqe-", "日本語")]
    [InlineData("broken&AMk", "broken&AMk")]
    public void Decode_ModifiedUtf7FolderNames_Unicode(string onDisk, string expected) =>
        Assert.Equal(expected, ModifiedUtf7.Decode(onDisk));

    [Fact]
    public async Task ContentHash_CrlfAndLfAndTrailingLineEnds_SameHash()
    {
        var lf = await Hash("Subject: a\n\nbody\nline 2\n");
        var crlf = await Hash("Subject: a\r\n\r\nbody\r\nline 2\r\n\r\n");
        var other = await Hash("Subject: a\n\nbody\nline 3\n");
        var bareCr = await Hash("Subject: a\n\nbody\rline 2\n");

        Assert.Equal(lf, crlf);
        Assert.NotEqual(lf, other);
        Assert.NotEqual(lf, bareCr);
    }

    [Fact]
    public async Task ContentHash_LargerThanItsBuffers_SameAsSmallReads()
    {
        var text = string.Concat(Enumerable.Range(0, 20000).Select(i => $"line {i}\r\n"));
        using var whole = new MemoryStream(System.Text.Encoding.ASCII.GetBytes(text));
        using var lf = new MemoryStream(System.Text.Encoding.ASCII.GetBytes(text.Replace("\r\n", "\n", StringComparison.Ordinal)));

        Assert.Equal(await ContentHash.ComputeAsync(whole, default), await ContentHash.ComputeAsync(lf, default));
    }

    private static async Task<string> Hash(string text)
    {
        using var stream = new MemoryStream(System.Text.Encoding.ASCII.GetBytes(text));
        return await ContentHash.ComputeAsync(stream, default);
    }
}
