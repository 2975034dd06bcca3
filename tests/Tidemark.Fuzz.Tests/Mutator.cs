namespace Tidemark.Fuzz.Tests;

/// <summary>AFL-style havoc mutations: bit flips, interesting values in length fields, block deletes, inserts, splices and truncation.</summary>
internal static class Mutator
{
    private static readonly uint[] Interesting = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff, 512, 4096, 65536, 1 << 20, 1 << 25];

    public static byte[] Mutate(byte[] seed, byte[] other, Random random)
    {
        var bytes = new List<byte>(seed);
        var steps = 1 << random.Next(1, 5);
        for (var step = 0; step < steps; step++)
        {
            if (bytes.Count < 4)
            {
                bytes.AddRange(new byte[4]);
            }

            var at = random.Next(bytes.Count);
            switch (random.Next(8))
            {
                case 0:
                    bytes[at] ^= (byte)(1 << random.Next(8));
                    break;
                case 1:
                    bytes[at] = (byte)random.Next(256);
                    break;
                case 2:
                    {
                        // A 32-bit big-endian field set to a value that tends to break bounds checks.
                        var value = Interesting[random.Next(Interesting.Length)];
                        at = Math.Min(at, bytes.Count - 4);
                        bytes[at] = (byte)(value >> 24);
                        bytes[at + 1] = (byte)(value >> 16);
                        bytes[at + 2] = (byte)(value >> 8);
                        bytes[at + 3] = (byte)value;
                        break;
                    }

                case 3:
                    bytes.RemoveRange(at, Math.Min(random.Next(1, 64), bytes.Count - at));
                    break;
                case 4:
                    {
                        var insert = new byte[random.Next(1, 64)];
                        random.NextBytes(insert);
                        bytes.InsertRange(at, insert);
                        break;
                    }

                case 5:
                    {
                        // Duplicate a block (repeated PDUs and requests).
                        var length = Math.Min(random.Next(1, 128), bytes.Count - at);
                        bytes.InsertRange(random.Next(bytes.Count), bytes.GetRange(at, length));
                        break;
                    }

                case 6:
                    {
                        // Splice: the head of this input and the tail of another.
                        var cut = random.Next(other.Length + 1);
                        bytes.RemoveRange(at, bytes.Count - at);
                        bytes.AddRange(other.AsSpan(cut).ToArray());
                        break;
                    }

                default:
                    bytes.RemoveRange(at, bytes.Count - at); // truncated in the middle of something
                    break;
            }
        }

        return [.. bytes];
    }
}
