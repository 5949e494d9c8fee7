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
        foreach (var point in repository.ListRestorePoints())
            foreach (var d in point.Disks)
                foreach (var c in repository.LoadManifest(point, d.Disk).Chunks)
                    if (!c.IsZero) marked.Add(c);

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
