namespace ProxyBackup.Repository;

public sealed record GcReport(int ChunksReferenced, int ChunksRemoved, long BytesFreed, int ChunksInGrace, int IncompletePointsRemoved, int TmpFilesRemoved);

/// <summary>
/// Mark and sweep under the exclusive lock: chunks no index references are removed once older than
/// the grace period, as are restore point directories without an index and stale tmp files.
/// </summary>
internal sealed class GarbageCollector(BackupRepository repository)
{
    public GcReport Run(TimeSpan grace, CancellationToken ct)
    {
        var cutoff = repository.Clock.GetUtcNow().UtcDateTime - grace;
        var marked = new HashSet<ChunkId>();
        var scan = repository.ScanRestorePoints();
        foreach (var point in scan.Points)
            MarkPoint(point.Source, point.Id, () => point.Disks.Select(d => repository.LoadManifest(point, d.Disk)));
        // A point whose index is damaged keeps what its manifests name (they carry their own checksum).
        foreach (var point in scan.Unreadable)
            MarkPoint(point.Source, point.Id, () => Directory.EnumerateFiles(repository.PointDirectory(point.Source, point.Id), "disk-*.manifest")
                .Select(f => Manifest.Parse(repository.ReadPointFile(point.Source, point.Id, Path.GetFileName(f)), $"{point.Source}/{point.Id}/{Path.GetFileName(f)}")));

        void MarkPoint(string source, string id, Func<IEnumerable<Manifest>> manifests)
        {
            try
            {
                foreach (var manifest in manifests())
                    foreach (var c in manifest.Chunks)
                        if (!c.IsZero) marked.Add(c);
            }
            catch (CorruptDataException e)
            {
                throw new RepositoryException($"GC removed nothing: {e.Message} It cannot tell which chunks {source}/{id} needs. " +
                    $"Run verify to see every damaged restore point; remove this one (proxybackup repository forget --source {source} --point {id}) if it cannot be repaired, then run gc again.", e);
            }
        }

        int removed = 0, inGrace = 0, incomplete = 0, tmp = 0;
        long freed = 0;
        foreach (var file in Directory.EnumerateFiles(repository.ChunksDirectory, "*", SearchOption.AllDirectories))
        {
            ct.ThrowIfCancellationRequested();
            ChunkId id;
            try { id = ChunkId.Parse(Path.GetFileName(file)); }
            catch (FormatException)
            {
                // A damaged chunk verify or a backup moved aside: evidence for a while, then freed.
                if (file.EndsWith(BackupRepository.BadChunkSuffix, StringComparison.Ordinal) && File.GetLastWriteTimeUtc(file) <= cutoff)
                {
                    freed += new FileInfo(file).Length;
                    AtomicFile.TryDelete(file);
                }
                continue;
            }
            if (marked.Contains(id)) continue;
            var info = new FileInfo(file);
            if (info.LastWriteTimeUtc > cutoff) { inGrace++; continue; }
            freed += info.Length;
            AtomicFile.TryDelete(file);
            removed++;
        }
        foreach (var source in Directory.EnumerateDirectories(repository.PointsDirectory))
            foreach (var point in Directory.EnumerateDirectories(source))
                if (!File.Exists(Path.Combine(point, "index")) && Directory.GetLastWriteTimeUtc(point) <= cutoff)
                {
                    Directory.Delete(point, recursive: true);
                    incomplete++;
                }
        foreach (var file in Directory.EnumerateFiles(repository.TmpDirectory))
            if (File.GetLastWriteTimeUtc(file) <= cutoff)
            {
                AtomicFile.TryDelete(file);
                tmp++;
            }
        return new GcReport(marked.Count, removed, freed, inGrace, incomplete, tmp);
    }
}
