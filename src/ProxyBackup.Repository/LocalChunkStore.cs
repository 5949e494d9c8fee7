namespace ProxyBackup.Repository;

/// <summary>
/// Chunk files in a directory, format v1's layout (docs/repository-format.md, "Chunks"):
/// <c>chunks/XX/NAME</c>, written to <c>tmp/</c>, synced and renamed into place; a damaged one is
/// set aside as <c>NAME.bad</c>, and GC sets a chunk aside as <c>NAME.gc</c> before it deletes it.
/// </summary>
public sealed class LocalChunkStore(string root, int maxFileLength) : IChunkStore
{
    public const string BadSuffix = ".bad";
    private const string GcAsideSuffix = ".gc";

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, byte> _fanOutDirectories = new(StringComparer.Ordinal);
    private volatile bool _directWrites = true;

    private string TmpDirectory => Path.Combine(root, "tmp");
    internal string Directory => Path.Combine(root, "chunks");

    /// <summary>
    /// The chunks directory and its 256 fan-out directories, made when the repository is created: a
    /// full backup would otherwise create them on its way, each an inode allocation on its critical
    /// path (docs/repository-format.md, "Layout"). <see cref="Write"/> still creates a missing one.
    /// </summary>
    internal static void CreateLayout(string root)
    {
        for (var b = 0; b < 256; b++) OwnerOnly.CreateDirectory(Path.Combine(root, "chunks", b.ToString("x2")));
    }

    internal string PathOf(ChunkId id)
    {
        var hex = id.ToString();
        return Path.Combine(Directory, hex[..2], hex);
    }

    public long? Length(ChunkId id) => new FileInfo(PathOf(id)) is { Exists: true, Length: > 0 } file ? file.Length : null;

    public bool Touch(ChunkId id, DateTimeOffset now)
    {
        var file = new FileInfo(PathOf(id));
        if (file is not { Exists: true, Length: > 0 }) return false;
        try { file.LastWriteTimeUtc = now.UtcDateTime; }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return false; }
        return true;
    }

    /// <summary>
    /// tmp, fdatasync, rename: the content is on disk before the name, whose own durability comes
    /// from the writer's syncfs before it commits the index. O_DIRECT when the file is in an aligned
    /// buffer and the file system takes it. The stamp is the file's modification time: a touch sets
    /// another (the toucher's now, to the 100 ns), and so does a rewrite.
    /// </summary>
    public long Write(ChunkId id, ReadOnlySpan<byte> file)
    {
        var path = PathOf(id);
        var fanOut = Path.GetDirectoryName(path)!;
        // Created before it is remembered: a worker that finds it remembered may rename into it at once.
        if (!_fanOutDirectories.ContainsKey(fanOut))
        {
            OwnerOnly.CreateDirectory(fanOut);
            _fanOutDirectories.TryAdd(fanOut, 0);
        }
        try
        {
            if (!_directWrites || !AtomicFile.TryWriteDirect(TmpDirectory, path, file, WriterTag.Current))
            {
                _directWrites = false;
                AtomicFile.Write(TmpDirectory, path, file, Durability.ContentBeforeName, WriterTag.Current);
            }
        }
        catch (IOException e) when (Native.IsNoSpace(e))
        {
            throw new RepositoryFullException(root, e);
        }
        return File.GetLastWriteTimeUtc(path).Ticks;
    }

    public bool RemoveUnchanged(ChunkId id, long stamp)
    {
        var path = PathOf(id);
        return File.GetLastWriteTimeUtc(path).Ticks == stamp && RemoveWhileUnused(path, time => time.Ticks == stamp);
    }

    public int Read(ChunkId id, Span<byte> buffer) => ReadFile(PathOf(id), id, buffer);

    /// <summary>Starts reading the file, so the disk or NFS server works while the CPU does.</summary>
    public void ReadAhead(ChunkId id) => Native.StartReading(PathOf(id));

    /// <summary>
    /// Renamed to <c>NAME.bad</c>, its time set first so that a GC meanwhile sees it as new under
    /// either name; checked again once aside and put back when sound.
    /// </summary>
    public ChunkQuarantine SetAside(ChunkId id, DateTimeOffset now, Func<ReadOnlySpan<byte>, bool> soundNow)
    {
        var path = PathOf(id);
        try
        {
            if (!File.Exists(path)) return ChunkQuarantine.NotMoved;
            File.SetLastWriteTimeUtc(path, now.UtcDateTime);
            return AtomicFile.SetAside(path, path + BadSuffix, putBack: aside => IsSound(aside, id, soundNow)) ? ChunkQuarantine.MovedAside : ChunkQuarantine.SoundNow;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return ChunkQuarantine.NotMoved;
        }
    }

    private bool IsSound(string path, ChunkId id, Func<ReadOnlySpan<byte>, bool> soundNow)
    {
        var file = System.Buffers.ArrayPool<byte>.Shared.Rent(maxFileLength);
        try
        {
            return soundNow(file.AsSpan(0, ReadFile(path, id, file.AsSpan(0, maxFileLength))));
        }
        catch (CorruptDataException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(file);
        }
    }

    private static int ReadFile(string path, ChunkId id, Span<byte> buffer)
    {
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            var length = RandomAccess.GetLength(handle);
            if (length > buffer.Length) throw new CorruptDataException($"Chunk {id} is larger than any chunk can be ({length} bytes).");
            var read = 0;
            while (read < length)
            {
                var n = RandomAccess.Read(handle, buffer[read..(int)length], read);
                if (n == 0) break;
                read += n;
            }
            return read;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new CorruptDataException($"Chunk {id} is missing from the repository.");
        }
    }

    /// <summary>None: a sweep sets a chunk aside and looks at its time again before it deletes it (<see cref="RemoveWhileUnused"/>).</summary>
    public IReadOnlyList<ChunkId> Missing(IReadOnlyCollection<ChunkId> reused, DateTimeOffset since) => [];

    public ChunkSweep Sweep(IReadOnlySet<ChunkId> keep, DateTimeOffset cutoff, CancellationToken ct)
    {
        var before = cutoff.UtcDateTime;
        int removed = 0, inGrace = 0;
        long freed = 0;
        foreach (var file in System.IO.Directory.EnumerateFiles(Directory, "*", SearchOption.AllDirectories))
        {
            ct.ThrowIfCancellationRequested();
            ChunkId id;
            try { id = ChunkId.Parse(Path.GetFileName(file)); }
            catch (FormatException)
            {
                // A damaged chunk verify or a backup set aside: evidence for a while, then freed.
                if (file.EndsWith(BadSuffix, StringComparison.Ordinal) && File.GetLastWriteTimeUtc(file) <= before)
                {
                    freed += new FileInfo(file).Length;
                    AtomicFile.TryDelete(file);
                }
                // A chunk a GC that died had set aside: a writer may have trusted it just before,
                // so it goes back under its name, and the next GC judges it like any chunk.
                else if (file.EndsWith(GcAsideSuffix, StringComparison.Ordinal))
                    AtomicFile.PutBack(file, file[..^GcAsideSuffix.Length]);
                continue;
            }
            if (keep.Contains(id)) continue;
            var info = new FileInfo(file);
            if (info.LastWriteTimeUtc > before || !RemoveWhileUnused(file, time => time <= before)) { inGrace++; continue; }
            freed += info.Length;
            removed++;
        }
        return new ChunkSweep(removed, freed, inGrace);
    }

    /// <summary>
    /// Sets the chunk aside as <c>NAME.gc</c>, then looks at its time again where it lies: a writer
    /// that touched it between the caller's look and the move relies on it, and it goes back (a
    /// writer touching it after the move finds it absent and stores it again). Deleted only while
    /// <paramref name="unused"/> still holds for its time (GC's sweep, a failed writer's cleanup).
    /// </summary>
    private static bool RemoveWhileUnused(string file, Func<DateTime, bool> unused)
    {
        var aside = file + GcAsideSuffix;
        try
        {
            if (!AtomicFile.SetAside(file, aside, putBack: a => !unused(File.GetLastWriteTimeUtc(a)))) return false;
        }
        catch (FileNotFoundException) { return false; }
        AtomicFile.TryDelete(aside);
        return true;
    }
}
