using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text.Json;

namespace ProxyBackup.Repository;

/// <summary>
/// Which restore points a copy takes: all, one source's, those from a time on; with <paramref name="Keep"/>,
/// only those the target's retention would keep among its points and these (a point the target's
/// retention removed is not sent again).
/// </summary>
public sealed record CopySelection(string? Source = null, DateTimeOffset? Since = null, ProxyBackup.Contracts.RetentionPolicy? Keep = null);

/// <summary>What a copy did. <paramref name="Failed"/>: points not copied (damaged in the first repository), with why.</summary>
public sealed record CopyReport(int Copied, int AlreadyThere, int ChunksWritten, long BytesWritten, IReadOnlyList<string> Failed);

/// <summary>
/// Copies restore points from one repository into another (docs/repository-format.md, "Copies"):
/// oldest first, each under its own source and id, with only the chunks the target lacks. Every
/// chunk is read and checked against its name in the source, so damage is never carried over; it
/// is named anew with the target's key and sealed with it (the two repositories' keys differ
/// unless both are unencrypted). A point's index is written last, after the chunks this copy wrote
/// were read back from the target and checked (chunks the target held already are trusted by their
/// name, as an incremental backup trusts them; the target's own verify checks them): a copy killed
/// midway leaves no point, and run again it skips the points and chunks already there.
/// </summary>
public static class RepositoryCopy
{
    /// <summary>Chunks in flight at once: enough to hide an object store's latency on two cores.</summary>
    private const int Workers = 8;

    public static async Task<CopyReport> RunAsync(BackupRepository from, BackupRepository to, CopySelection selection, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        if (from.Config.Id == to.Config.Id)
            throw new RepositoryException($"{from.Root} and {to.Root} are the same repository (id {from.Config.Id}): copy into another one.");
        if (from.Config.ChunkSize != to.Config.ChunkSize)
            throw new RepositoryException($"{to.Root} has chunks of {to.Config.ChunkSize} bytes, {from.Root} of {from.Config.ChunkSize}: a copy keeps the chunks' boundaries. " +
                $"Copy into a repository created with 'proxybackup repository init --chunk-size {from.Config.ChunkSize}'.");
        if (to.ReadOnly) throw new RepositoryException($"Repository {to.Root} is read-only: a copy needs to write to it.");
        using var reading = await RepositoryLock.AcquireAsync(from, exclusive: false, $"copy to {to.Root}", from.SharedLockWait, ct).ConfigureAwait(false);
        using var writing = await RepositoryLock.AcquireAsync(to, exclusive: false, $"copy from {from.Root}", to.SharedLockWait, ct).ConfigureAwait(false);
        var scan = from.ScanRestorePoints(selection.Source);
        var points = scan.Points.Where(p => selection.Since is not { } since || p.Time >= since).OrderBy(p => p.Time).ToList();
        if (selection.Keep is { IsEmpty: false } keep)
        {
            // Decided per source over what the target holds and what would be sent, as the target's retention will decide after.
            var now = to.Clock.GetUtcNow();
            var kept = new HashSet<(string, string)>();
            foreach (var source in points.Select(p => p.Source).Distinct())
            {
                var candidates = to.ListRestorePoints(source).Concat(points.Where(p => p.Source == source && !to.Points.Exists(p.Source, p.Id))).OrderBy(p => p.Time).ToList();
                foreach (var decision in Retention.Plan(candidates, keep, now).Where(d => d.Keep)) kept.Add((decision.Point.Source, decision.Point.Id));
            }
            points = [.. points.Where(p => kept.Contains((p.Source, p.Id)))];
        }
        var totalBytes = points.Where(p => !to.Points.Exists(p.Source, p.Id)).Sum(p => p.Disks.Sum(d => d.Size));
        var meter = new ProgressMeter($"copy to {to.Root}", totalBytes, progress, storesData: true);
        var run = new CopyRun(from, to, meter);
        int copied = 0, there = 0;
        // A point whose index cannot be read is not copied, and said so.
        var failed = scan.Unreadable.Where(u => selection.Source is null || u.Source == selection.Source).Select(u => $"{u.Source}/{u.Id}: {u.Problem}").ToList();
        foreach (var point in points)
        {
            ct.ThrowIfCancellationRequested();
            if (to.Points.Exists(point.Source, point.Id))
            {
                there++;
                continue;
            }
            try
            {
                using var guarded = CancellationTokenSource.CreateLinkedTokenSource(ct, reading.Lost, writing.Lost);
                await run.CopyPointAsync(point, writing, guarded.Token).ConfigureAwait(false);
                copied++;
            }
            catch (CorruptDataException) when (!from.Points.Exists(point.Source, point.Id))
            {
                // Forgotten in the source while it was copied (retention runs beside): nothing to copy, nothing damaged.
            }
            catch (CorruptDataException e)
            {
                failed.Add($"{point.Source}/{point.Id}: {e.Message}");
            }
        }
        meter.Report();
        return new CopyReport(copied, there, run.ChunksWritten, run.BytesWritten, failed);
    }

    private sealed class CopyRun(BackupRepository from, BackupRepository to, ProgressMeter meter)
    {
        private readonly StoredChunks _source = from.StoredChunks;
        private readonly StoredChunks _target = to.StoredChunks;
        /// <summary>Source name → target name of the chunks this run has placed in the target and checked there.</summary>
        private readonly ConcurrentDictionary<ChunkId, ChunkId> _placed = new();
        private int _chunksWritten;
        private long _bytesWritten;

        public int ChunksWritten => _chunksWritten;
        public long BytesWritten => Interlocked.Read(ref _bytesWritten);

        public async Task CopyPointAsync(RestorePoint point, RepositoryLock writing, CancellationToken ct)
        {
            var started = to.Clock.GetUtcNow();
            var reused = new ConcurrentBag<ChunkId>();
            to.Points.Begin(point.Source, point.Id);
            var committed = false;
            try
            {
                var disks = new List<DiskEntry>();
                foreach (var disk in point.Disks)
                {
                    var manifest = from.LoadManifest(point, disk.Disk);
                    var names = await PlaceAsync(manifest, reused, ct).ConfigureAwait(false);
                    var bytes = new Manifest(manifest.DiskSize, manifest.ChunkSize, [.. manifest.Chunks.Select(c => c.IsZero ? c : names[c])]).ToBytes();
                    to.StoredPoints.WriteFile(point.Source, point.Id, StoredPoints.ManifestFile(disk.Disk), bytes, Durability.AtCommit);
                    disks.Add(disk with { ManifestSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)) });
                }
                foreach (var metadata in point.Metadata)
                    to.StoredPoints.WriteFile(point.Source, point.Id, StoredPoints.MetadataFile(metadata.Name), from.LoadMetadata(point, metadata.Name), Durability.AtCommit);
                if (to.Chunks.Missing([.. reused.Distinct()], started) is { Count: > 0 } lost)
                    throw new RepositoryException($"The copy of {point.Source}/{point.Id} is not committed: {lost.Count} chunk(s) it reused in {to.Root} were removed by a garbage collection beside it. Run the copy again.");
                var index = point with
                {
                    // A parent not copied (older than --since) is not named: the target has no such point.
                    Parent = point.Parent is { } parent && to.Points.Exists(point.Source, parent) ? parent : null,
                    Disks = disks,
                };
                to.Points.SyncBeforeIndex();
                writing.EnsureHeld();
                to.StoredPoints.WriteFile(point.Source, point.Id, "index", JsonSerializer.SerializeToUtf8Bytes(index, RepositoryJson.Default.RestorePoint), Durability.Immediate);
                committed = true;
            }
            finally
            {
                if (!committed) to.Points.Discard(point.Source, point.Id);
            }
        }

        /// <summary>Each distinct chunk of the manifest in the target: its target name, checked there.</summary>
        private async Task<IReadOnlyDictionary<ChunkId, ChunkId>> PlaceAsync(Manifest manifest, ConcurrentBag<ChunkId> reused, CancellationToken ct)
        {
            var lengths = new Dictionary<ChunkId, int>();
            for (var i = 0; i < manifest.Chunks.Count; i++)
                if (!manifest.Chunks[i].IsZero) lengths.TryAdd(manifest.Chunks[i], manifest.ChunkLength(i));
            meter.Add(manifest.DiskSize - lengths.Values.Sum(l => (long)l), 0);
            var workers = new ConcurrentBag<ChunkWorker>();
            try
            {
                await Parallel.ForEachAsync(lengths, new ParallelOptions { MaxDegreeOfParallelism = Workers, CancellationToken = ct }, (entry, token) =>
                {
                    if (!workers.TryTake(out var worker)) worker = new ChunkWorker(_source, _target);
                    try
                    {
                        Place(worker, entry.Key, entry.Value, reused);
                    }
                    finally
                    {
                        workers.Add(worker);
                    }
                    return ValueTask.CompletedTask;
                }).ConfigureAwait(false);
            }
            finally
            {
                foreach (var worker in workers) worker.Dispose();
            }
            return lengths.Keys.ToDictionary(id => id, id => _placed[id]);
        }

        private void Place(ChunkWorker worker, ChunkId id, int length, ConcurrentBag<ChunkId> reused)
        {
            if (_placed.TryGetValue(id, out var known))
            {
                // Placed by this run for an earlier point: its time is set again, for a GC beside.
                if (_target.Store.Touch(known, _target.Now)) reused.Add(known);
                else _placed.TryRemove(id, out _);
            }
            if (!_placed.ContainsKey(id))
            {
                var data = worker.Load(id);
                var name = worker.NameInTarget(data);
                long written = 0;
                if (_target.Store.Touch(name, _target.Now)) reused.Add(name);
                else
                {
                    var file = worker.TargetCodec.Encode(name, data);
                    _target.Store.Write(name, file.Span);
                    // Verified on arrival: read back from the target and checked against its name.
                    if (!_target.IsSound(name, worker.TargetCodec))
                        throw new RepositoryException($"Chunk {name} did not read back as written from {to.Root}: check the target's storage, then run the copy again.");
                    written = file.Length;
                    Interlocked.Increment(ref _chunksWritten);
                    Interlocked.Add(ref _bytesWritten, written);
                }
                _placed[id] = name;
                meter.Add(length, written);
                return;
            }
            meter.Add(length, 0);
        }
    }

    /// <summary>One worker's buffers and codecs: the source's to open a chunk, the target's to name and seal it.</summary>
    private sealed class ChunkWorker(StoredChunks source, StoredChunks target) : IDisposable
    {
        private readonly byte[] _file = new byte[StoredChunks.FileCapacity(source.ChunkSize)];
        private readonly byte[] _scratch = new byte[source.ChunkSize];
        private readonly ChunkCodec _sourceCodec = source.NewCodec();
        private readonly ChunkHasher _targetNames = new(target.NameKey, concurrentCallers: 1);
        public ChunkCodec TargetCodec { get; } = target.NewCodec();

        /// <summary>The chunk's bytes, checked against its name in the source (<see cref="CorruptDataException"/> when damaged or missing).</summary>
        public ReadOnlySpan<byte> Load(ChunkId id) => _sourceCodec.Open(id, _file.AsSpan(0, source.Store.Read(id, _file)), _scratch);

        public ChunkId NameInTarget(ReadOnlySpan<byte> data) => _targetNames.Name(data);

        public void Dispose()
        {
            _sourceCodec.Dispose();
            TargetCodec.Dispose();
        }
    }
}
