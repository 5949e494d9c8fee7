using System.Security.Cryptography;
using System.Text;

namespace ProxyBackup.Repository.Tests;

/// <summary>Disk images with the content mixes the tests need.</summary>
internal static class TestDisks
{
    /// <summary>A third zeros, a third text-like, a third random; <paramref name="size"/> need not be a multiple of anything.</summary>
    public static void WriteMixed(string path, long size, int seed = 1)
    {
        var rnd = new Random(seed);
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.SetLength(size);
        var third = size / 3;
        f.Position = third;
        var line = 0;
        var sb = new StringBuilder();
        while (f.Position < 2 * third)
        {
            sb.Clear();
            for (var i = 0; i < 2000; i++) sb.Append("line ").Append(line++).Append(" value=").Append(rnd.Next()).Append('\n');
            var bytes = Encoding.ASCII.GetBytes(sb.ToString());
            f.Write(bytes, 0, (int)Math.Min(bytes.Length, 2 * third - f.Position));
        }
        var buf = new byte[1 << 16];
        while (f.Position < size)
        {
            rnd.NextBytes(buf);
            f.Write(buf, 0, (int)Math.Min(buf.Length, size - f.Position));
        }
    }

    /// <summary>Overwrites <paramref name="count"/> blocks at random offsets; returns the distinct chunk indexes touched.</summary>
    public static HashSet<long> Scribble(string path, int count, int blockSize, int chunkSize, int seed)
    {
        var rnd = new Random(seed);
        var touched = new HashSet<long>();
        using var f = new FileStream(path, FileMode.Open, FileAccess.Write);
        var data = new byte[blockSize];
        for (var i = 0; i < count; i++)
        {
            var offset = rnd.NextInt64(f.Length - blockSize) / 4096 * 4096;
            rnd.NextBytes(data);
            f.Position = offset;
            f.Write(data);
            for (var c = offset / chunkSize; c <= (offset + blockSize - 1) / chunkSize; c++) touched.Add(c);
        }
        return touched;
    }

    public static string Sha256(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    public static string Sha256(Stream s) => Convert.ToHexString(SHA256.HashData(s));
}
