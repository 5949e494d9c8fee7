namespace ProxyBackup.Repository;

/// <summary>
/// Where a repository's chunk files live, by name (docs/repository-format.md, "Chunk stores"). The
/// pipelines (backup, restore, restore streams, verify, GC, stats) reach chunks only through this:
/// how a name maps to a file, atomic publication, fsync of directories and O_DIRECT are a store's
/// own business (<see cref="LocalChunkStore"/> is the directory layout of format v1). Every method
/// may be called from many threads at once.
/// </summary>
public interface IChunkStore
{
    /// <summary>The stored chunk file's length, or null when it is absent (an empty file counts as absent: a chunk file is never empty).</summary>
    long? Length(ChunkId id);

    /// <summary>
    /// A writer's dedup check: true when the chunk is stored, after setting its time to
    /// <paramref name="now"/> so that a GC running beside keeps it; false when it is absent, or was
    /// removed before the time could be set.
    /// </summary>
    bool Touch(ChunkId id, DateTimeOffset now);

    /// <summary>
    /// Stores a chunk file: its whole content is durable before its name can be seen.
    /// <see cref="RepositoryFullException"/> when the storage is full. Returns the stored file's
    /// stamp, which a touch or another write changes (<see cref="RemoveUnchanged"/>).
    /// </summary>
    long Write(ChunkId id, ReadOnlySpan<byte> file);

    /// <summary>
    /// A failed writer's cleanup: removes a chunk it wrote (<paramref name="stamp"/> from
    /// <see cref="Write"/>) unless another writer touched or wrote it since, which then relies on it.
    /// Returns whether it was removed.
    /// </summary>
    bool RemoveUnchanged(ChunkId id, long stamp);

    /// <summary>Reads a chunk file into <paramref name="buffer"/> and returns its length; <see cref="CorruptDataException"/> when it is missing or larger than the buffer.</summary>
    int Read(ChunkId id, Span<byte> buffer);

    /// <summary>A hint: the chunk will be read soon, so the storage may start fetching it.</summary>
    void ReadAhead(ChunkId id);

    /// <summary>
    /// Takes a chunk that failed its check out of use under its name, kept aside as evidence with its
    /// time set to <paramref name="now"/> (docs/repository-format.md, "Damage and healing"), so that
    /// the next backup of that content stores it again. Once aside it is checked again with
    /// <paramref name="soundNow"/>: one a backup rewrote since the caller read the damaged one goes
    /// back (<see cref="ChunkQuarantine.SoundNow"/>).
    /// </summary>
    ChunkQuarantine SetAside(ChunkId id, DateTimeOffset now, Func<ReadOnlySpan<byte>, bool> soundNow);

    /// <summary>
    /// GC's sweep: removes every chunk that is not in <paramref name="keep"/> and whose time is at or
    /// before <paramref name="cutoff"/>, unless a writer touches it while it goes (it then stays);
    /// chunks set aside as damaged before the cutoff go too.
    /// </summary>
    ChunkSweep Sweep(IReadOnlySet<ChunkId> keep, DateTimeOffset cutoff, CancellationToken ct);

    /// <summary>
    /// Before a writer commits: which of the chunks it found stored since <paramref name="since"/>
    /// (<see cref="Touch"/> true) a sweep removed meanwhile. Empty where a sweep cannot remove a
    /// chunk a writer touched (the local store sets it aside and looks at its time again); a store
    /// whose sweep can (no atomic rename, no conditional delete: S3) looks them up when a sweep ran.
    /// </summary>
    IReadOnlyList<ChunkId> Missing(IReadOnlyCollection<ChunkId> reused, DateTimeOffset since);
}

public enum ChunkQuarantine { MovedAside, NotMoved, SoundNow }

/// <summary>What a sweep did: chunks removed, bytes freed (with damaged chunks set aside), unreferenced chunks kept as newer than the cutoff.</summary>
public sealed record ChunkSweep(int Removed, long BytesFreed, int InGrace);
