namespace ProxyBackup.Repository;

/// <summary>Format 1's layout: <c>points/SOURCE/ID/FILE</c>, written through <c>tmp/</c> (docs/repository-format.md, "Layout").</summary>
internal sealed class LocalPointStore(string root) : IPointStore
{
    private const string Index = "index";
    // A point directory GC took aside to remove; ids never contain a dot (docs/repository-format.md, "Layout").
    private const string GcAsideSuffix = ".gc";
    /// <summary>The writer's tag, written when the point begins (docs/repository-format.md, "Layout").</summary>
    public const string WriterFile = "writer";
    private string PointsDirectory => Path.Combine(root, "points");
    private string TmpDirectory => Path.Combine(root, "tmp");
    private string DirectoryOf(string source, string id) => Path.Combine(PointsDirectory, source, id);

    public IEnumerable<string> Sources() =>
        Directory.Exists(PointsDirectory) ? Directory.EnumerateDirectories(PointsDirectory).Select(Path.GetFileName).OfType<string>() : [];

    public IEnumerable<string> Points(string source)
    {
        var dir = Path.Combine(PointsDirectory, source);
        if (!Directory.Exists(dir)) yield break;
        foreach (var point in Directory.EnumerateDirectories(dir))
            // A point GC moved aside is not listed, even whole (a GC that died judging it): the next GC puts it back.
            if (!point.EndsWith(GcAsideSuffix, StringComparison.Ordinal) && File.Exists(Path.Combine(point, Index)))
                yield return Path.GetFileName(point);
    }

    public bool Exists(string source, string id) => File.Exists(Path.Combine(DirectoryOf(source, id), Index));

    public void Begin(string source, string id)
    {
        OwnerOnly.CreateDirectory(DirectoryOf(source, id));
        if (WriterTag.Current is { } writer) Write(source, id, WriterFile, System.Text.Encoding.ASCII.GetBytes(writer), Durability.AtCommit);
    }

    public void Write(string source, string id, string file, ReadOnlySpan<byte> content, Durability durability)
    {
        try
        {
            AtomicFile.Write(TmpDirectory, Path.Combine(DirectoryOf(source, id), file), content, durability, WriterTag.Current);
        }
        catch (IOException e) when (Native.IsNoSpace(e))
        {
            throw new RepositoryFullException(root, e);
        }
    }

    public byte[]? Read(string source, string id, string file)
    {
        try { return File.ReadAllBytes(Path.Combine(DirectoryOf(source, id), file)); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
    }

    public IEnumerable<string> Files(string source, string id) =>
        Directory.EnumerateFiles(DirectoryOf(source, id)).Select(Path.GetFileName).OfType<string>();

    /// <summary>One syncfs: the manifests and metadata written at commit, and the names of the chunk files beside them.</summary>
    public void SyncBeforeIndex() => Native.SyncFileSystem(root);

    public void Remove(string source, string id)
    {
        var dir = DirectoryOf(source, id);
        File.Delete(Path.Combine(dir, Index));
        Native.FsyncDirectory(dir);
        Directory.Delete(dir, recursive: true);
    }

    public void Discard(string source, string id)
    {
        try { Directory.Delete(DirectoryOf(source, id), recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public IReadOnlyList<IncompletePoint> Incomplete()
    {
        var incomplete = new List<IncompletePoint>();
        if (!Directory.Exists(PointsDirectory)) return incomplete;
        foreach (var source in Directory.EnumerateDirectories(PointsDirectory))
            foreach (var point in Directory.EnumerateDirectories(source))
            {
                if (File.Exists(Path.Combine(point, Index)))
                {
                    // A GC that died between taking a point aside and finding its index: it goes back.
                    if (point.EndsWith(GcAsideSuffix, StringComparison.Ordinal)) TryMove(point, point[..^GcAsideSuffix.Length]);
                    continue;
                }
                string? writer;
                try { writer = WriterTag.Parse(File.ReadAllText(Path.Combine(point, WriterFile))); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { writer = null; }
                DateTimeOffset written;
                try { written = Directory.GetLastWriteTimeUtc(point); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
                incomplete.Add(new IncompletePoint(Path.GetFileName(source), Path.GetFileName(point), writer, written));
            }
        return incomplete;
    }

    private static void TryMove(string from, string to)
    {
        try { Directory.Move(from, to); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>
    /// Moved aside under a name no writer uses, then judged: a writer that commits meanwhile (one
    /// taken for dead by mistake) either finished before the move, and its point goes back, or finds
    /// its directory gone and fails; it never reports a point whose files were deleted.
    /// </summary>
    public bool RemoveIncomplete(string source, string id)
    {
        var dir = DirectoryOf(source, id);
        var aside = dir + GcAsideSuffix;
        try
        {
            if (File.Exists(Path.Combine(dir, Index))) return false;
            Directory.Move(dir, aside);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return false; } // gone, or being written
        if (File.Exists(Path.Combine(aside, Index)))
        {
            Directory.Move(aside, dir);
            return false;
        }
        Directory.Delete(aside, recursive: true);
        return true;
    }
}
