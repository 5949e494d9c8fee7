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
            RestorePoint index;
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
        var chunks = users.ToList();
        // Names are checked with the platform's SHA-256, independent of the lanes that may have
        // written them: a fault in one implementation cannot confirm itself.
        var unbatched = repository.Tuning.VerifyWorkers;
        using var buffers = readData ? await ChunkBuffers.ReserveAsync(repository, chunkSize, unbatched, 0, meter.ReportWaitingForMemory, ct, platformOnly: true).ConfigureAwait(false) : null;
        meter.Start();
        var workers = buffers?.Workers ?? unbatched;
        var hasher = new ChunkHasher(repository.Keys?.NameKey, workers, repository.Tuning, platformOnly: true);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = failed.Token;
        var next = -1;

        void Check(int worker)
        {
            using var codec = readData ? new ChunkCodec(chunkSize, repository.Config.Compression.Level, repository.Keys, hasher) : null;
            var loader = codec is null ? null : buffers!.ForWorker(worker, repository, codec);
            for (var i = Interlocked.Increment(ref next); i < chunks.Count; i = Interlocked.Increment(ref next))
            {
                token.ThrowIfCancellationRequested();
                var pair = chunks[i];
                // Reading a few chunks ahead keeps the disk or NFS server busy while this one is checked.
                if (loader is not null && i + 2 * workers < chunks.Count) repository.ReadAhead(chunks[i + 2 * workers].Key);
                string? why = null;
                if (loader is null)
                {
                    if (!repository.HasChunk(pair.Key)) why = $"chunk {pair.Key} is missing";
                }
                else
                {
                    try { loader.Load(pair.Key, token); }
                    catch (CorruptDataException e)
                    {
                        // Aside, its name is free: the next backup that reads this content stores it again.
                        why = repository.QuarantineChunk(pair.Key) ? $"{e.Message} Moved aside as {pair.Key}{BackupRepository.BadChunkSuffix}; the next backup of this data stores it again." : e.Message;
                    }
                }
                if (why is not null)
                {
                    damagedChunks.Add(pair.Key.ToString());
                    foreach (var point in pair.Value.Distinct()) Damage(point, why);
                }
                meter.Add(chunkSize, 0);
            }
        }

        await DiskBackup.WhenAllOrFirstFailure([.. hasher.StartWorkers(workers, Check, token)], failed).ConfigureAwait(false);
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
