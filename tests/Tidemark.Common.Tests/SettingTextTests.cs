namespace Tidemark.Common.Tests;

/// <summary>
/// The shared duration parser (config file, replicas, partners, alert thresholds): its units, the
/// default bound of a day that every setting keeps unless it names its own, and a caller's own bound.
/// </summary>
public class SettingTextTests
{
    [Theory]
    [InlineData("50us", 0.05)]
    [InlineData("250ms", 250)]
    [InlineData("1s", 1000)]
    [InlineData(" 2m ", 120_000)]
    [InlineData("1.5h", 5_400_000)]
    [InlineData("24h", 86_400_000)]
    [InlineData("1d", 86_400_000)]
    [InlineData("0.5d", 43_200_000)]
    public void Duration_ValidText_ReturnsSpan(string text, double milliseconds) =>
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), SettingText.Duration(text, "x"));

    [Theory]
    [InlineData("")]
    [InlineData("10")]
    [InlineData("d")]
    [InlineData("0s")]
    [InlineData("-1h")]
    [InlineData("NaNs")]
    [InlineData("1w")]
    [InlineData("ten minutes")]
    public void Duration_NotADuration_RefusedNamingSettingAndForms(string text)
    {
        var ex = Assert.Throws<ArgumentException>(() => SettingText.Duration(text, "idle-timeout"));
        Assert.Equal($"idle-timeout '{text}' is not a duration; write it like 500ms, 1s, 2m, 1h or 2d", ex.Message);
    }

    [Theory]
    [InlineData("25h")]
    [InlineData("2d")]
    [InlineData("1441m")]
    [InlineData("Infinityd")]
    public void Duration_OverADayWithoutOwnBound_RefusedNamingTheBound(string text)
    {
        var ex = Assert.Throws<ArgumentException>(() => SettingText.Duration(text, "send-timeout"));
        Assert.Equal($"send-timeout '{text}' is longer than 1d, the most it may be", ex.Message);
    }

    [Fact]
    public void Duration_OwnBound_TakesDaysUpToItAndNoMore()
    {
        var month = TimeSpan.FromDays(30);
        Assert.Equal(TimeSpan.FromDays(7), SettingText.Duration("7d", "alert-rpo", month));
        Assert.Equal(month, SettingText.Duration("720h", "alert-rpo", month));
        var ex = Assert.Throws<ArgumentException>(() => SettingText.Duration("31d", "alert-rpo", month));
        Assert.Equal("alert-rpo '31d' is longer than 30d, the most it may be", ex.Message);
        Assert.Throws<ArgumentException>(() => SettingText.Duration("2s", "receive-poll", TimeSpan.FromSeconds(1)));
    }

    [Theory]
    [InlineData(0.5, "500ms")]
    [InlineData(90, "90s")]
    [InlineData(600, "10m")]
    [InlineData(129_600, "36h")]
    [InlineData(604_800, "7d")]
    public void Text_ReadsBackAsTheSameSpan(double seconds, string text)
    {
        Assert.Equal(text, SettingText.Text(TimeSpan.FromSeconds(seconds)));
        Assert.Equal(TimeSpan.FromSeconds(seconds), SettingText.Duration(text, "x", TimeSpan.FromDays(30)));
    }
}
