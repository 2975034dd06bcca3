using System.Text;

namespace Tidemark.Protocols.Iscsi.Tests;

public sealed class Crc32CTests
{
    [Fact]
    public void Compute_CheckString_MatchesCastagnoliCheckValue()
    {
        Assert.Equal(0xE3069283u, Crc32C.Compute(Encoding.ASCII.GetBytes("123456789")));
    }

    [Fact]
    public void Compute_ThirtyTwoZeroBytes_MatchesRfc3720Vector()
    {
        // RFC 3720 B.4: 32 bytes of zeros give the CRC bytes aa 36 91 8a (sent least significant first).
        Assert.Equal(0x8A9136AAu, Crc32C.Compute(new byte[32]));
    }

    [Fact]
    public void Compute_ThirtyTwoIncreasingBytes_MatchesRfc3720Vector()
    {
        var data = Enumerable.Range(0, 32).Select(i => (byte)i).ToArray();
        Assert.Equal(0x46DD794Eu, Crc32C.Compute(data));
    }

    [Fact]
    public void AppendSoftware_RandomData_MatchesHardwarePath()
    {
        var random = new Random(7);
        for (var length = 0; length < 300; length += 7)
        {
            var data = new byte[length];
            random.NextBytes(data);
            Assert.Equal(Crc32C.Append(Crc32C.Start, data), Crc32C.AppendSoftware(Crc32C.Start, data));
        }
    }
}
