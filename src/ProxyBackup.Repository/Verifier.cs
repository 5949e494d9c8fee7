using System.Collections.Concurrent;

namespace ProxyBackup.Repository;

public sealed record VerifyReport(
    int RestorePointsChecked,
    int ChunksChecked,
    IReadOnlyDictionary<string, IReadOnlyList<string>> DamagedRestorePoints,
    IReadOnlyList<string> DamagedChunks)
{
    public bool Ok => DamagedRestorePoints.Count == 0;

    /// <summary>The restore points this verify looked at ("source/id").</summary>
    public IReadOnlyList<string> PointsChecked { get; init; } = [];

    /// <summary>Of <see cref="ChunksChecked"/>, how many were read and hashed (all with --read-data, one part with a subset; the others were checked to exist).</summary>
    public int ChunksRead { get; init; }
}

/// <summary>
/// Part <see cref="Part"/> of <see cref="Parts"/> of the chunks, chosen by name: reading parts 1 to N
/// on N days reads every chunk once (restic's --read-data-subset n/N).
/// </summary>
public sealed record VerifySubset(int Part, int Parts)
{
    public static VerifySubset Parse(string text)
    {
        var slash = text.Split('/');
        if (slash.Length == 2 && int.TryParse(slash[0], out var n) && int.TryParse(slash[1], out var total) && total is >= 1 and <= 1000 && n >= 1 && n <= total)
            return new VerifySubset(n, total);
        throw new ArgumentException($"'{text}' is not a subset: write n/N with 1 <= n <= N <= 1000, e.g. 3/7.");
    }

    /// <summary>By the name's first four bytes, read little-endian (called for every chunk: no allocation).</summary>
    public bool Contains(ChunkId id) => System.Buffers.Binary.BinaryPrimitives.ReverseEndianness((uint)(id.A >> 32)) % (uint)Parts == (uint)(Part - 1);

    public override string ToString() => $"{Part}/{Parts}";
}

/// <summary>
/// Checks that every restore point can be restored: its index, manifests and metadata read and
/// match, every chunk it references exists, and with <c>readData</c> every chunk decrypts,
/// decompresses and hashes to its name. Reports which restore points are damaged and why.
/// </summary>
internal sealed class Verifier(StoredChunks chunks, StoredPoints points, PipelineTuning tuning, ChunkMemory memory)
{
    public async Task<VerifyReport> RunAsync(bool readData, VerifySubset? subset, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var problems = new ConcurrentDictionary<string, ConcurrentBag<string>>();
        void Damage(string point, string why) => problems.GetOrAdd(point, _ => []).Add(why);
        // Each chunk's users: the restore points referencing it, with the length their manifests give it.
        var users = new Dictionary<ChunkId, List<(string Point, int Length)>>();
        var checkedPoints = new List<string>();
        foreach (var (source, id) in AllPointIds())
        {
            ct.ThrowIfCancellationRequested();
            var name = $"{source}/{id}";
            checkedPoints.Add(name);
            RestorePoint index;
            try { index = points.LoadIndex(source, id); }
            catch (RepositoryException e) { Damage(name, e.Message); continue; }
            foreach (var m in index.Metadata)
            {
                try { points.LoadMetadata(index, m.Name); }
                catch (RepositoryException e) { Damage(name, e.Message); }
            }
            foreach (var d in index.Disks)
            {
                try
                {
                    var manifest = points.LoadManifest(index, d.Disk);
                    for (var i = 0; i < manifest.Chunks.Count; i++)
                    {
                        var chunk = manifest.Chunks[i];
                        if (chunk.IsZero) continue;
                        if (!users.TryGetValue(chunk, out var uses)) users[chunk] = uses = [];
                        // A manifest's repeats of a chunk come one after another in its list: kept once.
                        var use = (name, manifest.ChunkLength(i));
                        if (uses.Count == 0 || uses[^1] != use) uses.Add(use);
                    }
                }
                catch (RepositoryException e) { Damage(name, e.Message); }
            }
        }

        var damagedChunks = new ConcurrentBag<string>();
        var chunkSize = chunks.ChunkSize;
        var meter = new ProgressMeter(readData ? "verify (read data)" : "verify", (long)users.Count * chunkSize, progress);
        var used = users.ToList();
        // Names are checked with the platform's SHA-256, independent of the lanes that may have
        // written them: a fault in one implementation cannot confirm itself.
        var unbatched = tuning.VerifyWorkers;
        using var buffers = readData ? await ChunkBuffers.ReserveAsync(memory, tuning, chunkSize, unbatched, 0, meter.ReportWaitingForMemory, ct, platformOnly: true).ConfigureAwait(false) : null;
        meter.Start();
        var workers = buffers?.Workers ?? unbatched;
        var hasher = new ChunkHasher(chunks.NameKey, workers, tuning, platformOnly: true);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = failed.Token;
        var next = -1;
        var chunksRead = 0;

        void Check(int worker)
        {
            using var codec = readData ? chunks.NewCodec(hasher) : null;
            var loader = codec is null ? null : buffers!.ForWorker(worker, chunks.Store, codec);
            for (var i = Interlocked.Increment(ref next); i < used.Count; i = Interlocked.Increment(ref next))
            {
                token.ThrowIfCancellationRequested();
                var pair = used[i];
                // Reading a few chunks ahead keeps the disk or NFS server busy while this one is checked.
                if (loader is not null && i + 2 * workers < used.Count) chunks.Store.ReadAhead(used[i + 2 * workers].Key);
                string? why = null;
                var read = loader is not null && (subset is null || subset.Contains(pair.Key));
                if (read) Interlocked.Increment(ref chunksRead);
                if (!read)
                {
                    if (chunks.Store.Length(pair.Key) is null) why = $"chunk {pair.Key} is missing";
                }
                else
                {
                    try
                    {
                        // A chunk sound in itself still breaks a restore that needs it at another length.
                        var length = loader!.Load(pair.Key, token).Length;
                        foreach (var (point, expected) in pair.Value.Where(u => u.Length != length))
                            Damage(point, $"chunk {pair.Key} holds {length} bytes where a manifest needs {expected}");
                    }
                    catch (CorruptDataException e)
                    {
                        // Aside, its name is free: the next backup that reads this content stores it again.
                        why = chunks.Quarantine(pair.Key, codec!) switch
                        {
                            ChunkQuarantine.MovedAside => $"{e.Message} Moved aside (kept as evidence for GC's grace); the next backup of this data stores it again.",
                            ChunkQuarantine.SoundNow => null, // a backup stored it again meanwhile
                            _ => e.Message,
                        };
                    }
                }
                if (why is not null)
                {
                    damagedChunks.Add(pair.Key.ToString());
                    foreach (var point in pair.Value.Select(u => u.Point).Distinct()) Damage(point, why);
                }
                meter.Add(chunkSize, 0);
            }
        }

        await DiskBackup.WhenAllOrFirstFailure([.. hasher.StartWorkers(workers, Check, token)], failed).ConfigureAwait(false);
        meter.Report();
        // A retention or forget may remove a point while verify reads it (both take shared locks,
        // and a GC beside them may remove its chunks): what it misses then is not damage, and the
        // point is not reported at all.
        foreach (var name in problems.Keys.Where(n => n.Split('/', 2) is [var s, var i] && !points.Store.Exists(s, i)).ToList())
        {
            problems.TryRemove(name, out _);
            checkedPoints.Remove(name);
        }
        return new VerifyReport(checkedPoints.Count, users.Count,
            problems.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)[.. p.Value.Distinct().Order(StringComparer.Ordinal)]),
            [.. damagedChunks.Order(StringComparer.Ordinal)]) { ChunksRead = chunksRead, PointsChecked = checkedPoints };
    }

    private IEnumerable<(string Source, string Id)> AllPointIds()
    {
        foreach (var s in points.Store.Sources().Order(StringComparer.Ordinal))
            foreach (var p in points.Store.Points(s).Order(StringComparer.Ordinal))
                yield return (s, p);
    }
}

/// <summary>The last verification of a restore point (docs/repository-format.md, "Verify state"): when, what it read, and what it found.</summary>
public sealed record VerifyState(
    [property: System.Text.Json.Serialization.JsonPropertyName("time")] DateTimeOffset Time,
    [property: System.Text.Json.Serialization.JsonPropertyName("data")] string Data,
    [property: System.Text.Json.Serialization.JsonPropertyName("ok")] bool Ok);
