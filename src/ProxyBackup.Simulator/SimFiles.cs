namespace ProxyBackup.Simulator;

/// <summary>Disk files of the simulated cloud: sparse raw files, copied without writing holes.</summary>
internal static class SimFiles
{
    private const int Block = 1 << 20;

    public static void CreateSparse(string path, long bytes)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.SetLength(bytes);
    }

    /// <summary>Copies src to dst, leaving all-zero blocks as holes, and gives dst exactly src's length.</summary>
    public static void CopySparse(string src, string dst)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(dst)!);
        var tmp = dst + ".part";
        var buffer = new byte[Block];
        using (var input = new FileStream(src, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, Block))
        using (var output = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, Block))
        {
            int n;
            while ((n = input.ReadAtLeast(buffer, Block, throwOnEndOfStream: false)) > 0)
            {
                if (buffer.AsSpan(0, n).ContainsAnyExcept((byte)0)) output.Write(buffer, 0, n);
                else output.Seek(n, SeekOrigin.Current);
            }
            output.SetLength(input.Length);
        }
        File.Move(tmp, dst, overwrite: true);
    }

    public static void Delete(string path)
    {
        if (File.Exists(path)) File.Delete(path);
    }
}
