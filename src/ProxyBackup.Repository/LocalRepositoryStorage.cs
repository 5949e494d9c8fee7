using System.Security.Cryptography;

namespace ProxyBackup.Repository;

/// <summary>Format 1 in a directory (docs/repository-format.md, "Layout"): small files written through <c>tmp/</c> and renamed into place.</summary>
public sealed class LocalRepositoryStorage(string path) : IRepositoryStorage
{
    public string Location { get; } = System.IO.Path.GetFullPath(path);

    private string TmpDirectory => System.IO.Path.Combine(Location, "tmp");
    private string PathOf(string name) => System.IO.Path.Combine(Location, name);

    public string NoRepositoryHere() => Directory.Exists(Location)
        ? $"{Location} is not a ProxyBackup repository (no config file); create one with 'repository init'."
        : $"Repository {Location} does not exist (is the disk or NFS share mounted?).";

    public byte[]? Read(string name)
    {
        try { return File.ReadAllBytes(PathOf(name)); }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException) { return null; }
    }

    public void Write(string name, ReadOnlySpan<byte> content)
    {
        var target = PathOf(name);
        OwnerOnly.CreateDirectory(System.IO.Path.GetDirectoryName(target)!);
        AtomicFile.Write(TmpDirectory, target, content, Durability.Immediate);
    }

    public IReadOnlyList<string> List(string folder)
    {
        var dir = PathOf(folder);
        return Directory.Exists(dir) ? [.. Directory.EnumerateFiles(dir).Select(System.IO.Path.GetFileName).OfType<string>()] : [];
    }

    public void Delete(string name) => AtomicFile.TryDelete(PathOf(name));

    public DateTimeOffset? LastWritten(string name)
    {
        var file = new FileInfo(PathOf(name));
        return file.Exists ? new DateTimeOffset(file.LastWriteTimeUtc) : null;
    }

    // The root of a file system of its own holds the file system's lost+found: empty all the same.
    public bool IsEmpty() =>
        !Directory.Exists(Location) || !Directory.EnumerateFileSystemEntries(Location).Any(e => System.IO.Path.GetFileName(e) != "lost+found");

    public void CreateLayout()
    {
        foreach (var d in new[] { "", "chunks", "points", "locks", "tmp", "keys" }) OwnerOnly.CreateDirectory(PathOf(d));
        LocalChunkStore.CreateLayout(Location);
    }

    /// <summary>
    /// Creates the working directories and checks that a file can be written: false on a read-only
    /// copy (a read-only mount, a snapshot of the backup disk), which can still be listed, verified
    /// and restored from, without a lock (docs/repository-format.md, "Locks").
    /// </summary>
    public bool PrepareForWriting()
    {
        try
        {
            foreach (var d in new[] { "chunks", "points", "locks", "tmp" }) OwnerOnly.CreateDirectory(PathOf(d));
            var probe = System.IO.Path.Combine(TmpDirectory, $"probe-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    public IChunkStore Chunks(int maxFileLength) => new LocalChunkStore(Location, maxFileLength);

    public IPointStore Points() => new LocalPointStore(Location);

    public IReadOnlyList<TemporaryFile> Temporaries() =>
        Directory.Exists(TmpDirectory)
            ? [.. Directory.EnumerateFiles(TmpDirectory).Select(f => System.IO.Path.GetFileName(f)).Select(n => new TemporaryFile(n, WriterTag.InTmpName(n), new DateTimeOffset(File.GetLastWriteTimeUtc(System.IO.Path.Combine(TmpDirectory, n)))))]
            : [];

    // A file renamed into place meanwhile is gone: nothing to count.
    public bool RemoveTemporary(string name)
    {
        var file = System.IO.Path.Combine(TmpDirectory, name);
        if (!File.Exists(file)) return false;
        AtomicFile.TryDelete(file);
        return true;
    }
}
