namespace ProxyBackup.FileRestore;

/// <summary>A restore point's disk, read on demand through its random-access stream (one reader at a time).</summary>
internal sealed class StreamFile(Stream stream) : IServedFile
{
    public long Size { get; } = stream.Length;

    public int Read(long offset, Span<byte> into)
    {
        lock (stream)
        {
            stream.Position = offset;
            return stream.Read(into);
        }
    }

    /// <summary>Bytes at an offset, short only at the end (what the LVM reader asks for).</summary>
    public byte[] ReadAt(long offset, int count)
    {
        var bytes = new byte[Math.Max(0, (int)Math.Min(count, Size - offset))];
        var got = 0;
        while (got < bytes.Length)
        {
            var n = Read(offset + got, bytes.AsSpan(got));
            if (n <= 0) break;
            got += n;
        }
        return bytes;
    }
}

/// <summary>A file made of runs of other files (an LVM logical volume: its extents on its physical volumes).</summary>
internal sealed class MappedFile(IReadOnlyList<(IServedFile File, long Offset, long Length)> runs) : IServedFile
{
    public long Size { get; } = runs.Sum(r => r.Length);

    public int Read(long offset, Span<byte> into)
    {
        foreach (var (file, start, length) in runs)
        {
            if (offset >= length) { offset -= length; continue; }
            return file.Read(start + offset, into[..(int)Math.Min(into.Length, length - offset)]);
        }
        return 0;
    }
}
