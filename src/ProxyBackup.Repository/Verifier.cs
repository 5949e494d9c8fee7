using System.Collections.Concurrent;

namespace ProxyBackup.Repository;

public sealed record VerifyReport(
    int RestorePointsChecked,
    int ChunksChecked,
    IReadOnlyDictionary<string, IReadOnlyList<string>> DamagedRestorePoints,
    IReadOnlyList<string> DamagedChunks)
{
    public bool Ok => DamagedRestorePoints.Count == 0;
}

/// <summary>
/// Checks that every restore point can be restored: its index, manifests and metadata read and
/// match, every chunk it references exists, and with <c>readData</c> every chunk decrypts,
/// decompresses and hashes to its name. Reports which restore points are damaged and why.
/// </summary>
internal sealed class Verifier(BackupRepository repository)
{
    public async Task<VerifyReport> RunAsync(bool readData, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var problems = new ConcurrentDictionary<string, ConcurrentBag<string>>();
        void Damage(string point, string why) => problems.GetOrAdd(point, _ => []).Add(why);
        var users = new Dictionary<ChunkId, List<string>>();
        var points = 0;
        foreach (var (source, id) in AllPointIds())
        {
            ct.ThrowIfCancellationRequested();
            var name = $"{source}/{id}";
            points++;
            RestorePointIndex index;
            try { index = repository.LoadIndex(source, id); }
            catch (RepositoryException e) { Damage(name, e.Message); continue; }
            foreach (var m in index.Metadata)
            {
                try { repository.LoadMetadata(index, m.Name); }
                catch (RepositoryException e) { Damage(name, e.Message); }
            }
            foreach (var d in index.Disks)
            {
                try
                {
                    foreach (var chunk in repository.LoadManifest(index, d.Disk).Chunks.Where(c => !c.IsZero).Distinct())
                    {
                        if (!users.TryGetValue(chunk, out var list)) users[chunk] = list = [];
                        list.Add(name);
                    }
                }
                catch (RepositoryException e) { Damage(name, e.Message); }
            }
        }

        var damagedChunks = new ConcurrentBag<string>();
        var meter = new ProgressMeter(readData ? "verify (read data)" : "verify", (long)users.Count * repository.Config.ChunkSize, progress);
        var chunkSize = repository.Config.ChunkSize;
        // One codec and one pair of chunk buffers per worker thread, not per chunk: verify --read-data
        // goes through every chunk of the repository.
        var chunks = users.ToList();
        var workers = Math.Clamp(Environment.ProcessorCount, 1, 8);
        await Task.Run(() => Parallel.For(0, chunks.Count, new ParallelOptions { CancellationToken = ct, MaxDegreeOfParallelism = workers },
            () => readData ? new ChunkReader(repository, chunkSize) : null,
            (i, _, reader) =>
            {
                var pair = chunks[i];
                // Reading a few chunks ahead keeps the disk or NFS server busy while this one is checked.
                if (reader is not null && i + 2 * workers < chunks.Count) repository.ReadAhead(chunks[i + 2 * workers].Key);
                string? why = null;
                if (reader is null)
                {
                    if (!repository.HasChunk(pair.Key)) why = $"chunk {pair.Key} is missing";
                }
                else
                {
                    try { reader.Check(pair.Key); }
                    catch (CorruptDataException e) { why = e.Message; }
                }
                if (why is not null)
                {
                    damagedChunks.Add(pair.Key.ToString());
                    foreach (var point in pair.Value.Distinct()) Damage(point, why);
                }
                meter.Add(chunkSize, 0);
                return reader;
            },
            reader => reader?.Dispose()), ct).ConfigureAwait(false);
        meter.Report();
        return new VerifyReport(points, users.Count,
            problems.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)[.. p.Value.Distinct().Order(StringComparer.Ordinal)]),
            [.. damagedChunks.Order(StringComparer.Ordinal)]);
    }

    private IEnumerable<(string Source, string Id)> AllPointIds()
    {
        if (!Directory.Exists(repository.PointsDirectory)) yield break;
        foreach (var s in Directory.EnumerateDirectories(repository.PointsDirectory).Order(StringComparer.Ordinal))
            foreach (var p in Directory.EnumerateDirectories(s).Order(StringComparer.Ordinal))
                if (File.Exists(Path.Combine(p, "index")))
                    yield return (Path.GetFileName(s), Path.GetFileName(p));
    }
}

/// <summary>
/// A reader of verified chunks (verify's workers, the random-access stream): a codec and a chunk
/// file buffer reused for every chunk. Every read throws <see cref="CorruptDataException"/> when a
/// chunk is not what its name says.
/// </summary>
internal sealed class ChunkReader(BackupRepository repository, int chunkSize) : IDisposable
{
    private readonly ChunkCodec _codec = new(chunkSize, repository.Config.Compression.Level, repository.Keys);
    private readonly byte[] _file = new byte[BackupRepository.ChunkFileCapacity(chunkSize)];
    private byte[]? _scratch;

    /// <summary>Reads, decrypts, decompresses and hashes a chunk, keeping nothing.</summary>
    public void Check(ChunkId id) => _codec.Open(id, ChunkFile(id), _scratch ??= new byte[chunkSize]);

    /// <summary>Reads a chunk into <paramref name="destination"/>; returns its length.</summary>
    public int Read(ChunkId id, Span<byte> destination) => _codec.Decode(id, ChunkFile(id), destination);

    private ReadOnlySpan<byte> ChunkFile(ChunkId id) => _file.AsSpan(0, repository.ReadChunkFile(id, _file));

    public void Dispose() => _codec.Dispose();
}
