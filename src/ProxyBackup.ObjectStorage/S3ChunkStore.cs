using System.Buffers;
using System.Text.Json;
using ProxyBackup.Repository;

namespace ProxyBackup.ObjectStorage;

/// <summary>
/// Chunk files as objects <c>chunks/XX/NAME</c> (docs/repository-format.md, "S3"). A PUT shows an
/// object only whole, so a chunk is never seen half-written. S3 has no rename and no way to set a
/// time: a touch copies the object onto itself with the time in its metadata, and a chunk's time is
/// the later of that and its last modification; a damaged chunk is copied to <c>NAME.bad</c> and
/// removed. The sweep cannot set a chunk
/// aside before it judges it again, so it records its run in <c>gc/sweep</c>, and a writer that
/// overlapped one looks up what it reused before it commits (<see cref="Missing"/>).
/// </summary>
internal sealed class S3ChunkStore(S3Bucket bucket, int maxFileLength) : IChunkStore
{
    private const string BadSuffix = ".bad";
    internal const string SweepRecord = "gc/sweep";

    /// <summary>Clocks of proxies and of the S3 server differ: a sweep that ended this long before a writer started still counts as beside it.</summary>
    private static readonly TimeSpan ClockMargin = TimeSpan.FromMinutes(10);

    /// <summary>A sweep record not finished after this long is a GC that died (its lock went stale long before).</summary>
    private static readonly TimeSpan SweepGivenUpAfter = RepositoryLock.StaleAfter;

    private static string Key(ChunkId id)
    {
        var hex = id.ToString();
        return $"chunks/{hex[..2]}/{hex}";
    }

    public long? Length(ChunkId id) => bucket.Head(Key(id)) is { Length: > 0 } head ? head.Length : null;

    public bool Touch(ChunkId id, DateTimeOffset now) => bucket.Touch(Key(id), now);

    public long Write(ChunkId id, ReadOnlySpan<byte> file)
    {
        var copy = ArrayPool<byte>.Shared.Rent(file.Length);
        try
        {
            file.CopyTo(copy);
            bucket.Put(Key(id), copy, file.Length);
            return 0;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(copy);
        }
    }

    /// <summary>
    /// Never: without a conditional delete, a chunk another writer touched between the look and the
    /// delete would go. A failed writer's new chunks wait for GC's grace instead.
    /// </summary>
    public bool RemoveUnchanged(ChunkId id, long stamp) => false;

    public int Read(ChunkId id, Span<byte> buffer)
    {
        var file = ArrayPool<byte>.Shared.Rent(Math.Min(buffer.Length, maxFileLength));
        try
        {
            var length = bucket.GetInto(Key(id), file);
            if (length == -1) throw new CorruptDataException($"Chunk {id} is missing from the repository.");
            if (length < 0 || length > buffer.Length) throw new CorruptDataException($"Chunk {id} is larger than any chunk can be.");
            file.AsSpan(0, length).CopyTo(buffer);
            return length;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(file);
        }
    }

    /// <summary>Nothing: a GET starts when the worker asks (the restore runs several workers at once).</summary>
    public void ReadAhead(ChunkId id) { }

    public ChunkQuarantine SetAside(ChunkId id, DateTimeOffset now, Func<ReadOnlySpan<byte>, bool> soundNow)
    {
        var key = Key(id);
        if (!bucket.Copy(key, key + BadSuffix, now)) return ChunkQuarantine.NotMoved;
        bucket.Delete(key);
        // A backup that rewrote it between the caller's read and the copy made it sound: back it goes.
        if (bucket.Get(key + BadSuffix) is { } aside && aside.Length <= maxFileLength && soundNow(aside))
        {
            bucket.Copy(key + BadSuffix, key, now);
            bucket.Delete(key + BadSuffix);
            return ChunkQuarantine.SoundNow;
        }
        return ChunkQuarantine.MovedAside;
    }

    public ChunkSweep Sweep(IReadOnlySet<ChunkId> keep, DateTimeOffset cutoff, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        WriteSweepRecord(new SweepTimes(started, null));
        int removed = 0, inGrace = 0;
        long freed = 0;
        foreach (var (name, length, modified) in bucket.List("chunks/"))
        {
            ct.ThrowIfCancellationRequested();
            var file = name[(name.LastIndexOf('/') + 1)..];
            if (file.EndsWith(BadSuffix, StringComparison.Ordinal))
            {
                if (modified <= cutoff && bucket.Head(name) is { } aside && aside.Time <= cutoff)
                {
                    bucket.Delete(name);
                    freed += length;
                }
                continue;
            }
            ChunkId id;
            try { id = ChunkId.Parse(file); }
            catch (FormatException) { continue; }
            if (keep.Contains(id)) continue;
            // The listing may be older than a writer's touch: the time is looked at again just before the delete.
            if (modified > cutoff || bucket.Head(name) is not { } now || now.Time > cutoff)
            {
                inGrace++;
                continue;
            }
            bucket.Delete(name);
            freed += length;
            removed++;
        }
        WriteSweepRecord(new SweepTimes(started, DateTimeOffset.UtcNow));
        return new ChunkSweep(removed, freed, inGrace);
    }

    /// <summary>
    /// A writer touched a chunk after the sweep's second look and before its delete only if a sweep
    /// ran while the writer did: then (after waiting for a sweep still running) each reused chunk is
    /// looked up; otherwise nothing is asked.
    /// </summary>
    public IReadOnlyList<ChunkId> Missing(IReadOnlyCollection<ChunkId> reused, DateTimeOffset since)
    {
        if (reused.Count == 0) return [];
        var sweep = ReadSweepRecord();
        var waitUntil = DateTimeOffset.UtcNow + SweepGivenUpAfter;
        while (sweep is { Ended: null } && DateTimeOffset.UtcNow - sweep.Started < SweepGivenUpAfter && DateTimeOffset.UtcNow < waitUntil)
        {
            Thread.Sleep(TimeSpan.FromSeconds(1));
            sweep = ReadSweepRecord();
        }
        if (sweep is null || sweep.Ended is { } ended && ended < since - ClockMargin) return [];
        var missing = new System.Collections.Concurrent.ConcurrentBag<ChunkId>();
        Parallel.ForEach(reused, new ParallelOptions { MaxDegreeOfParallelism = 16 }, id =>
        {
            if (bucket.Head(Key(id)) is null) missing.Add(id);
        });
        return [.. missing];
    }

    internal sealed record SweepTimes(DateTimeOffset Started, DateTimeOffset? Ended);

    private void WriteSweepRecord(SweepTimes times)
    {
        var json = JsonSerializer.SerializeToUtf8Bytes(times);
        bucket.Put(SweepRecord, json, json.Length);
    }

    private SweepTimes? ReadSweepRecord()
    {
        try { return bucket.Get(SweepRecord) is { } json ? JsonSerializer.Deserialize<SweepTimes>(json) : null; }
        catch (JsonException) { return new SweepTimes(DateTimeOffset.MinValue, DateTimeOffset.MaxValue); } // unreadable: look everything up
    }
}
