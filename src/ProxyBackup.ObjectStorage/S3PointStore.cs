using ProxyBackup.Repository;

namespace ProxyBackup.ObjectStorage;

/// <summary>
/// Restore points as objects <c>points/SOURCE/ID/FILE</c> (docs/repository-format.md, "S3"). Each PUT
/// is durable when it returns, so nothing is synced before an index; a point exists once its
/// <c>index</c> object does, written last.
/// </summary>
internal sealed class S3PointStore(S3Bucket bucket) : IPointStore
{
    private const string Index = "index";
    private const string Folder = "points/";

    private static string Key(string source, string id, string file) => $"{Folder}{source}/{id}/{file}";

    public IEnumerable<string> Sources() =>
        bucket.List(Folder, delimited: true).Where(o => o.Name.EndsWith('/')).Select(o => o.Name[Folder.Length..^1]);

    public IEnumerable<string> Points(string source) =>
        bucket.List($"{Folder}{source}/").Select(o => o.Name.Split('/')).Where(p => p.Length == 4 && p[3] == Index).Select(p => p[2]);

    public bool Exists(string source, string id) => bucket.Head(Key(source, id, Index)) is not null;

    public void Begin(string source, string id)
    {
        if (WriterTag.Current is { } writer) Write(source, id, LocalPointStore.WriterFile, System.Text.Encoding.ASCII.GetBytes(writer), Durability.AtCommit);
    }

    public void Write(string source, string id, string file, ReadOnlySpan<byte> content, Durability durability) =>
        bucket.Put(Key(source, id, file), content.ToArray(), content.Length);

    public byte[]? Read(string source, string id, string file) => bucket.Get(Key(source, id, file));

    public IEnumerable<string> Files(string source, string id)
    {
        var folder = $"{Folder}{source}/{id}/";
        return bucket.List(folder).Select(o => o.Name[folder.Length..]);
    }

    /// <summary>Nothing to do: every chunk and file a point references was stored before its PUT returned.</summary>
    public void SyncBeforeIndex() { }

    public void Remove(string source, string id)
    {
        bucket.Delete(Key(source, id, Index));
        RemoveAll(source, id);
    }

    public void Discard(string source, string id)
    {
        try { RemoveAll(source, id); }
        catch (IOException) { } // left for GC, as a directory that could not be removed is
    }

    private void RemoveAll(string source, string id)
    {
        foreach (var file in Files(source, id).ToList()) bucket.Delete(Key(source, id, file));
    }

    public IReadOnlyList<IncompletePoint> Incomplete()
    {
        var incomplete = new List<IncompletePoint>();
        var byPoint = bucket.List(Folder).Select(o => (Parts: o.Name.Split('/'), o.LastModified)).Where(o => o.Parts.Length == 4)
            .GroupBy(o => (Source: o.Parts[1], Id: o.Parts[2]));
        foreach (var point in byPoint)
        {
            if (point.Any(o => o.Parts[3] == Index)) continue;
            var writer = point.Any(o => o.Parts[3] == LocalPointStore.WriterFile) && Read(point.Key.Source, point.Key.Id, LocalPointStore.WriterFile) is { } tag
                ? WriterTag.Parse(System.Text.Encoding.ASCII.GetString(tag))
                : null;
            incomplete.Add(new IncompletePoint(point.Key.Source, point.Key.Id, writer, point.Max(o => o.LastModified)));
        }
        return incomplete;
    }

    /// <summary>
    /// Looks for an index once more, then removes the files. Without a rename there is no moving
    /// aside: GC calls this only for a point whose writer holds no lock (ended or died) or whose files
    /// are all older than its cutoff, the start of the oldest lock holder; a writer taken for dead
    /// finds its lock gone before it commits (<see cref="RepositoryLock.EnsureHeld"/>) and does not.
    /// </summary>
    public bool RemoveIncomplete(string source, string id)
    {
        if (Exists(source, id)) return false;
        var files = Files(source, id).ToList();
        if (files.Count == 0) return false;
        foreach (var file in files) bucket.Delete(Key(source, id, file));
        return true;
    }
}
