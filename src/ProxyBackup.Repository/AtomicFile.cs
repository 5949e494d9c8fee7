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
        var tmp = Path.Combine(tmpDirectory, $"{Path.GetFileName(path)}.{Environment.ProcessId}.{Guid.NewGuid():N}");
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

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
