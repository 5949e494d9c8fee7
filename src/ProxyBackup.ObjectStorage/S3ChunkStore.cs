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

    /// <summary>A running sweep rewrites its record at least this often; one not rewritten for <see cref="SweepGivenUpAfter"/> is a GC that died.</summary>
    private static readonly TimeSpan SweepBeat = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan SweepGivenUpAfter = TimeSpan.FromMinutes(10);

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
            // The writer's time beside the server's: a sweep compares it with a cutoff on the writers' clocks.
            bucket.Put(Key(id), copy, file.Length, DateTimeOffset.UtcNow);
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

    /// <summary>
    /// Copied to <c>NAME.bad</c> first and judged there: a copy found sound (a backup rewrote the chunk
    /// since the caller read it) is dropped and the chunk never leaves its name; only a damaged one is
    /// removed from under its name.
    /// </summary>
    public ChunkQuarantine SetAside(ChunkId id, DateTimeOffset now, Func<ReadOnlySpan<byte>, bool> soundNow)
    {
        var key = Key(id);
        if (!bucket.Copy(key, key + BadSuffix, now)) return ChunkQuarantine.NotMoved;
        if (bucket.Get(key + BadSuffix) is { } aside && aside.Length <= maxFileLength && soundNow(aside))
        {
            bucket.Delete(key + BadSuffix);
            return ChunkQuarantine.SoundNow;
        }
        bucket.Delete(key);
        return ChunkQuarantine.MovedAside;
    }

    public ChunkSweep Sweep(IReadOnlySet<ChunkId> keep, DateTimeOffset cutoff, CancellationToken ct)
    {
        var started = DateTimeOffset.UtcNow;
        var beat = started;
        WriteSweepRecord(new SweepTimes(started, null, beat));
        int removed = 0, inGrace = 0;
        long freed = 0;
        try
        {
            foreach (var (name, length, modified) in bucket.List("chunks/"))
            {
                ct.ThrowIfCancellationRequested();
                if (DateTimeOffset.UtcNow - beat > SweepBeat) WriteSweepRecord(new SweepTimes(started, null, beat = DateTimeOffset.UtcNow));
                Judge(name, length, modified);
            }
        }
        finally
        {
            // Also when the sweep fails or is stopped: the writers waiting for its end go on at once.
            WriteSweepRecord(new SweepTimes(started, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow));
        }
        return new ChunkSweep(removed, freed, inGrace);

        void Judge(string name, long length, DateTimeOffset modified)
        {
            var file = name[(name.LastIndexOf('/') + 1)..];
            if (file.EndsWith(BadSuffix, StringComparison.Ordinal))
            {
                if (modified <= cutoff && bucket.Head(name) is { } aside && aside.Time <= cutoff)
                {
                    bucket.Delete(name);
                    freed += length;
                }
                return;
            }
            ChunkId id;
            try { id = ChunkId.Parse(file); }
            catch (FormatException) { return; }
            if (keep.Contains(id)) return;
            // The listing may be older than a writer's touch: the time is looked at again just before the delete.
            if (modified > cutoff || bucket.Head(name) is not { } now || now.Time > cutoff)
            {
                inGrace++;
                return;
            }
            bucket.Delete(name);
            freed += length;
            removed++;
        }
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
        // A sweep under way is waited for while it lives (it rewrites its record every minute).
        while (sweep is { Ended: null } && DateTimeOffset.UtcNow - (sweep.Beat ?? sweep.Started) < SweepGivenUpAfter)
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

    /// <param name="Beat">When a running sweep last rewrote its record.</param>
    internal sealed record SweepTimes(DateTimeOffset Started, DateTimeOffset? Ended, DateTimeOffset? Beat = null);

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
