namespace ProxyBackup.Repository;

/// <summary>Writes through tmp/ and a rename, so a reader never sees half a file.</summary>
internal static class AtomicFile
{
    /// <summary>
    /// tmp, optional fsync, rename; with <paramref name="durable"/> also fsync of the target directory.
    /// Without it, writeback is started at once and durability comes from a later syncfs.
    /// </summary>
    public static void Write(string tmpDirectory, string path, ReadOnlySpan<byte> content, bool durable)
    {
        var tmp = TmpPath(tmpDirectory, path);
        try
        {
            using (var f = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.None))
            {
                f.Write(content);
                if (durable) f.Flush(flushToDisk: true);
                else Native.StartWriteback(f.SafeFileHandle);
            }
            File.Move(tmp, path, overwrite: true);
            if (durable) Native.FsyncDirectory(Path.GetDirectoryName(path)!);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>
    /// Write without durability for content in a 4 KiB-aligned buffer: the aligned bulk goes with
    /// O_DIRECT, the short tail through the page cache. Copying chunk files into the page cache cost
    /// a backup more CPU than hashing them. False, with nothing written, where the file system
    /// refuses O_DIRECT or the content is not aligned.
    /// </summary>
    public static unsafe bool TryWriteDirect(string tmpDirectory, string path, ReadOnlySpan<byte> alignedContent)
    {
        fixed (byte* start = alignedContent)
        {
            if ((nuint)start % Native.DirectAlignment != 0) return false;
        }
        var tmp = TmpPath(tmpDirectory, path);
        try
        {
            using (var handle = Native.CreateDirect(tmp))
            {
                if (handle is null) return false;
                var bulk = alignedContent.Length / Native.DirectAlignment * Native.DirectAlignment;
                RandomAccess.Write(handle, alignedContent[..bulk], 0);
                if (bulk < alignedContent.Length)
                {
                    Native.EndDirect(handle);
                    RandomAccess.Write(handle, alignedContent[bulk..], bulk);
                }
            }
            File.Move(tmp, path, overwrite: true);
            return true;
        }
        catch (IOException e) when (e.HResult == Native.Einval)
        {
            // A device whose blocks are larger than 4 KiB takes the open but not the writes.
            TryDelete(tmp);
            return false;
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    private static string TmpPath(string tmpDirectory, string path) =>
        Path.Combine(tmpDirectory, $"{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}");

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
