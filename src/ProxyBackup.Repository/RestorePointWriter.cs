using System.Security.Cryptography;
using System.Text.Json;

namespace ProxyBackup.Repository;

/// <summary>
/// Builds one restore point: metadata and disks go into its directory as they come; <see cref="Commit"/>
/// makes everything durable and only then writes the index. Disposed without a commit, it removes
/// what it wrote, the new chunks too unless another writer relies on them by then, so that a backup
/// that failed (a full disk) gives its space back at once (a crash leaves the same, minus the
/// cleanup, which garbage collection does after its grace).
/// </summary>
public sealed class RestorePointWriter : IDisposable
{
    private readonly BackupRepository _repository;
    private readonly RepositoryLock _lock;
    private readonly RestorePoint? _parent;
    private readonly List<DiskEntry> _disks = [];
    private readonly List<MetadataEntry> _metadata = [];
    private readonly Dictionary<string, string> _tags;
    private readonly System.Collections.Concurrent.ConcurrentBag<(ChunkId Id, long Stamp)> _newChunks = [];
    private readonly System.Collections.Concurrent.ConcurrentBag<ChunkId> _reused = [];
    private bool _committed;

    internal RestorePointWriter(BackupRepository repository, string source, RestorePoint? parent, IReadOnlyDictionary<string, string>? tags)
    {
        BackupRepository.CheckSourceName(source);
        if (parent is not null && parent.Source != source) throw new ArgumentException($"The parent {parent.Source}/{parent.Id} belongs to another source than {source}.");
        _repository = repository;
        _parent = parent;
        _tags = tags?.ToDictionary() ?? [];
        Source = source;
        Time = repository.Clock.GetUtcNow();
        Id = BackupRepository.NewRestorePointId(Time);
        if (repository.ReadOnly) throw new RepositoryException($"Repository {repository.Root} is read-only: a backup needs to write to it.");
        _lock = RepositoryLock.Acquire(repository, exclusive: false, purpose: $"backup of {source}", repository.SharedLockWait);
        repository.Points.Begin(source, Id);
    }

    public string Source { get; }
    public string Id { get; }

    /// <summary>The shared lock this backup holds (its refresh, its loss).</summary>
    internal RepositoryLock Lock => _lock;
    public DateTimeOffset Time { get; }

    public void AddMetadata(string name, ReadOnlySpan<byte> content)
    {
        BackupRepository.CheckItemName(name);
        _repository.StoredPoints.WriteFile(Source, Id, StoredPoints.MetadataFile(name), content, Durability.AtCommit);
        _metadata.RemoveAll(m => m.Name == name);
        _metadata.Add(new MetadataEntry(name, Convert.ToHexStringLower(SHA256.HashData(content))));
    }

    /// <summary>
    /// Reads a disk (block device or file) into the restore point. With a parent, chunks equal to
    /// the parent's at the same position are neither compressed nor written.
    /// </summary>
    /// <param name="admission">Memory the job took before it started (<see cref="ChunkMemory.AdmitAsync"/>), drawn on first.</param>
    public async Task<DiskBackupStats> AddDiskAsync(string disk, string sourcePath, IProgress<TransferProgress>? progress = null, CancellationToken ct = default,
        ChunkMemory.Admission? admission = null)
    {
        BackupRepository.CheckItemName(disk);
        if (_disks.Any(d => d.Disk == disk)) throw new ArgumentException($"Disk '{disk}' is already in this restore point.");
        var previous = _parent?.Disks.Any(d => d.Disk == disk) == true ? _repository.LoadManifest(_parent, disk) : null;
        var (manifest, stats) = await _lock.RunAsync(ct, token => new DiskBackup(_repository.StoredChunks, _repository.Tuning, _repository.Memory, admission, _newChunks, _reused).RunAsync(sourcePath, previous, progress, token)).ConfigureAwait(false);
        var bytes = manifest.ToBytes();
        _repository.StoredPoints.WriteFile(Source, Id, StoredPoints.ManifestFile(disk), bytes, Durability.AtCommit);
        _disks.Add(new DiskEntry { Disk = disk, Size = manifest.DiskSize, ManifestSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)), Stats = stats });
        return stats;
    }

    /// <summary>Syncs the file system, then writes the index durably: from here on the restore point exists.</summary>
    public RestorePoint Commit()
    {
        if (_committed) throw new InvalidOperationException("Already committed.");
        var index = new RestorePoint
        {
            Source = Source, Id = Id, Time = Time, Parent = _parent?.Id, Tags = _tags,
            Disks = [.. _disks], Metadata = [.. _metadata],
        };
        if (_repository.Chunks.Missing([.. _reused.Distinct()], Time) is { Count: > 0 } lost)
            throw new RepositoryException($"The backup of {Source} is not committed: {lost.Count} chunk(s) it reused (such as {lost[0]}) were removed by a garbage collection that ran beside it. " +
                "Run the backup again: it stores them anew (docs/repository-format.md, \"S3\").");
        _repository.Points.SyncBeforeIndex();
        // Last, just before the index: the look-up above may have waited for a sweep.
        _lock.EnsureHeld();
        _repository.StoredPoints.WriteFile(Source, Id, "index", JsonSerializer.SerializeToUtf8Bytes(index, RepositoryJson.Default.RestorePoint), Durability.Immediate);
        _committed = true;
        _lock.Dispose();
        return index;
    }

    public void Dispose()
    {
        if (!_committed)
        {
            _repository.Points.Discard(Source, Id);
            // Under the lock still: a GC beside keeps what this writer relies on until it ends.
            foreach (var (id, stamp) in _newChunks)
            {
                try { _repository.Chunks.RemoveUnchanged(id, stamp); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
        }
        _lock.Dispose();
    }
}
