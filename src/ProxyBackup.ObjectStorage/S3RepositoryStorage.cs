using ProxyBackup.Repository;

namespace ProxyBackup.ObjectStorage;

/// <summary>
/// Format 1 in an S3 bucket (docs/repository-format.md, "S3"): the same names as in a directory,
/// as object keys under the location's prefix. An object is visible only once written whole, so no
/// temporary files are needed; nothing is larger than a chunk file (64 MiB at most), so no
/// multipart upload is either.
/// </summary>
public sealed class S3RepositoryStorage : IRepositoryStorage
{
    private readonly S3Bucket _bucket;

    public S3RepositoryStorage(S3Location location, S3Credentials credentials) : this(new S3Bucket(location, credentials)) { }

    internal S3RepositoryStorage(S3Bucket bucket) => _bucket = bucket;

    public string Location => _bucket.Location.ToString();

    public string NoRepositoryHere() =>
        $"{Location} holds no ProxyBackup repository (no config object): check the location, or create one with 'proxybackup repository init --repo {Location}'.";

    public byte[]? Read(string name) => _bucket.Get(name);

    public void Write(string name, ReadOnlySpan<byte> content) => _bucket.Put(name, content.ToArray(), content.Length);

    public IReadOnlyList<string> List(string folder) =>
        [.. _bucket.List(folder + "/", delimited: true).Select(o => o.Name[(folder.Length + 1)..]).Where(n => n.Length > 0 && !n.EndsWith('/'))];

    public void Delete(string name) => _bucket.Delete(name);

    public DateTimeOffset? LastWritten(string name) => _bucket.Head(name)?.Time;

    /// <summary>Also when the bucket does not exist yet: <see cref="CreateLayout"/> creates it.</summary>
    public bool IsEmpty()
    {
        try { return !_bucket.List("", delimited: true).Any(); }
        catch (BucketMissingException) { return true; }
    }

    /// <summary>The bucket, when it does not exist yet (restic does the same); S3 has no folders to make.</summary>
    public void CreateLayout() => _bucket.EnsureBucket();

    /// <summary>
    /// Writes and removes a probe object: false for a key that may only read (403), with which the
    /// repository is listed, verified and restored from without locks, as a read-only mount is
    /// (docs/repository-format.md, "Read-only repositories"): off-site copies are often read with such keys.
    /// </summary>
    public bool PrepareForWriting()
    {
        var probe = $"probe-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}";
        try
        {
            _bucket.Put(probe, [], 0);
        }
        catch (RepositoryException e) when (e is not BucketMissingException and not RepositoryFullException)
        {
            return false;
        }
        _bucket.Delete(probe);
        return true;
    }

    public IChunkStore Chunks(int maxFileLength) => new S3ChunkStore(_bucket, maxFileLength);

    public IPointStore Points() => new S3PointStore(_bucket);

    public IReadOnlyList<TemporaryFile> Temporaries() => [];

    public bool RemoveTemporary(string name) => false;
}
