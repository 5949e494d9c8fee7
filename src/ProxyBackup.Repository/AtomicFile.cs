namespace ProxyBackup.Repository;

/// <summary>When a file written through <see cref="AtomicFile"/> is safe from a crash.</summary>
public enum Durability
{
    /// <summary>Writeback starts at once; the syncfs before the next index makes it durable (files of one restore point).</summary>
    AtCommit,
    /// <summary>
    /// The content is on disk before the file gets its name, the name becomes durable with the next
    /// syncfs. For chunks: any later backup trusts a chunk by its name, so a crash must never leave
    /// a named chunk file whose content is incomplete.
    /// </summary>
    ContentBeforeName,
    /// <summary>Content and name are durable on return (config, keys, locks, the index).</summary>
    Immediate,
}

/// <summary>Writes through tmp/ and a rename, so a reader never sees half a file.</summary>
public static class AtomicFile
{
    /// <param name="writer">The writer's tag (<see cref="WriterTag"/>) for a chunk or restore point file, written under a lock; null for lock, key and config files, which GC removes by their age alone.</param>
    /// <param name="mode">The file's permissions; owner-only (the repository's files) unless given, e.g. for /etc/fstab.</param>
    public static void Write(string tmpDirectory, string path, ReadOnlySpan<byte> content, Durability durability, string? writer = null, UnixFileMode? mode = null)
    {
        var tmp = TmpPath(tmpDirectory, path, writer);
        try
        {
            using (var f = new FileStream(tmp, new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None, BufferSize = 1, UnixCreateMode = mode ?? OwnerOnly.File }))
            {
                f.Write(content);
                // The process umask narrows what was asked for at creation.
                if (mode is { } wanted) File.SetUnixFileMode(f.SafeFileHandle, wanted);
                if (durability == Durability.AtCommit) Native.StartWriteback(f.SafeFileHandle);
                else f.Flush(flushToDisk: true);
            }
            var replaces = File.Exists(path);
            File.Move(tmp, path, overwrite: true);
            if (durability == Durability.Immediate)
            {
                try { Native.FsyncDirectory(Path.GetDirectoryName(path)!); }
                catch (IOException) when (!replaces)
                {
                    // Not durable: a new file (a lock, an index) is taken back rather than left half-promised.
                    TryDelete(path);
                    throw;
                }
            }
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>
    /// A chunk file (<see cref="Durability.ContentBeforeName"/>) from a 4 KiB-aligned buffer: the
    /// aligned bulk goes with O_DIRECT, the short tail through the page cache, then fdatasync. Copying
    /// chunk files into the page cache cost a backup more CPU than hashing them. False, with nothing
    /// written, where the file system refuses O_DIRECT or the content is not aligned.
    /// </summary>
    public static unsafe bool TryWriteDirect(string tmpDirectory, string path, ReadOnlySpan<byte> alignedContent, string? writer = null)
    {
        fixed (byte* start = alignedContent)
        {
            if ((nuint)start % Native.DirectAlignment != 0) return false;
        }
        var tmp = TmpPath(tmpDirectory, path, writer);
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
                Native.SyncData(handle);
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

    /// <summary><c>NAME.TAG.GUID</c>, or <c>NAME.PID.GUID</c> untagged (docs/repository-format.md, "Layout").</summary>
    internal static string TmpPath(string tmpDirectory, string path, string? writer) =>
        Path.Combine(tmpDirectory, $"{Path.GetFileName(path)}.{writer ?? Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture)}.{Guid.NewGuid():N}");

    /// <summary>
    /// Moves <paramref name="path"/> to <paramref name="aside"/>, then asks <paramref name="putBack"/>
    /// about the file where it now lies: true puts it back (<see cref="PutBack"/>). Returns whether it
    /// stays aside. Moved first, judged after: whoever looks for the name meanwhile finds it absent.
    /// </summary>
    public static bool SetAside(string path, string aside, Func<string, bool> putBack)
    {
        File.Move(path, aside, overwrite: true);
        if (!putBack(aside)) return true;
        PutBack(aside, path);
        return false;
    }

    /// <summary>Moves a file set aside back under its name; when the name was written again meanwhile, that copy stays and this one goes.</summary>
    public static void PutBack(string aside, string path)
    {
        try { File.Move(aside, path, overwrite: false); }
        catch (IOException) when (File.Exists(path)) { TryDelete(aside); }
    }

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
