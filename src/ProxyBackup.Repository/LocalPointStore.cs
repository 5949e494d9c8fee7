namespace ProxyBackup.Repository;

/// <summary>Format 1's layout: <c>points/SOURCE/ID/FILE</c>, written through <c>tmp/</c> (docs/repository-format.md, "Layout").</summary>
internal sealed class LocalPointStore(string root) : IPointStore
{
    private const string Index = "index";
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
            if (File.Exists(Path.Combine(point, Index)))
                yield return Path.GetFileName(point);
    }

    public bool Exists(string source, string id) => File.Exists(Path.Combine(DirectoryOf(source, id), Index));

    public void Begin(string source, string id) => OwnerOnly.CreateDirectory(DirectoryOf(source, id));

    public void Write(string source, string id, string file, ReadOnlySpan<byte> content, Durability durability)
    {
        try
        {
            AtomicFile.Write(TmpDirectory, Path.Combine(DirectoryOf(source, id), file), content, durability);
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

    public int SweepIncomplete(DateTimeOffset cutoff)
    {
        var removed = 0;
        foreach (var source in Directory.EnumerateDirectories(PointsDirectory))
            foreach (var point in Directory.EnumerateDirectories(source))
                if (!File.Exists(Path.Combine(point, Index)) && Directory.GetLastWriteTimeUtc(point) <= cutoff.UtcDateTime)
                {
                    Directory.Delete(point, recursive: true);
                    removed++;
                }
        return removed;
    }
}
