namespace ProxyBackup.Repository;

public sealed record GcReport(int ChunksReferenced, int ChunksRemoved, long BytesFreed, int ChunksInGrace, int IncompletePointsRemoved, int TmpFilesRemoved);

/// <summary>
/// Mark and sweep beside backups (docs/repository-format.md, "Garbage collection"): chunks no index
/// references are removed when their time is before the cutoff, the older of the start of the mark
/// and the start of the oldest operation holding a lock, less the grace; writers set the time of
/// every chunk they reuse, so what a running backup relies on is newer. Restore point directories
/// without an index and tmp files go by the same cutoff, or at once when their writer is gone.
/// </summary>
internal sealed class GarbageCollector(IChunkStore chunks, StoredPoints points, IRepositoryStorage storage, TimeProvider clock, string? ownLock)
{
    public GcReport Run(TimeSpan grace, CancellationToken ct)
    {
        var markStart = clock.GetUtcNow();
        var others = RepositoryLock.Holders(storage, clock).Where(h => h.Name != ownLock).ToList();
        // A holder whose lock file cannot be read may have started at any time: nothing it may rely on can be told apart.
        if (others.FirstOrDefault(h => !h.Readable) is { Name: { } unreadable })
            throw new RepositoryException($"GC removed nothing: the lock file {unreadable} cannot be read, so GC cannot tell since when its holder writes. " +
                "Check its permissions, or remove it if no ProxyBackup process uses the repository (it is also dropped once 30 minutes old).");
        var oldestHolder = others.Select(h => h.Info.Created).DefaultIfEmpty(markStart).Min();
        var cutoff = (oldestHolder < markStart ? oldestHolder : markStart) - grace;
        var marked = new HashSet<ChunkId>();
        var scan = points.Scan();
        foreach (var point in scan.Points)
            MarkPoint(point.Source, point.Id, () => point.Disks.Select(d => points.LoadManifest(point, d.Disk)));
        // A point whose index is damaged keeps what its manifests name (they carry their own checksum).
        foreach (var point in scan.Unreadable)
            MarkPoint(point.Source, point.Id, () => points.Store.Files(point.Source, point.Id).Where(StoredPoints.IsManifestFile)
                .Select(f => Manifest.Parse(points.ReadFile(point.Source, point.Id, f), $"{point.Source}/{point.Id}/{f}")));

        void MarkPoint(string source, string id, Func<IEnumerable<Manifest>> manifests)
        {
            try
            {
                foreach (var manifest in manifests())
                    foreach (var c in manifest.Chunks)
                        if (!c.IsZero) marked.Add(c);
            }
            catch (Exception e) when (e is RepositoryException or DirectoryNotFoundException && !points.Store.Exists(source, id))
            {
                // Forgotten while GC read it (retention runs beside GC): nothing of it is to be kept.
            }
            catch (CorruptDataException e)
            {
                throw new RepositoryException($"GC removed nothing: {e.Message} It cannot tell which chunks {source}/{id} needs. " +
                    $"Run verify to see every damaged restore point; remove this one (proxybackup repository forget --source {source} --point {id}) if it cannot be repaired, then run gc again.", e);
            }
        }

        var swept = chunks.Sweep(marked, cutoff, ct);
        var (incomplete, tmp) = RemoveLeftovers(cutoff);
        return new GcReport(marked.Count, swept.Removed, swept.BytesFreed, swept.InGrace, incomplete, tmp);
    }

    /// <summary>
    /// Restore points without an index and tmp files: those older than the cutoff, and at once those
    /// of a writer that holds no lock any more (it ended or died; its stale locks were removed). The
    /// leftovers are listed before the locks: a writer takes its lock before it writes, so one listed
    /// without a lock cannot be a writer that started after the listing; a point whose writer
    /// committed in between has its index by then, and stays.
    /// </summary>
    private (int Points, int TmpFiles) RemoveLeftovers(DateTimeOffset cutoff)
    {
        var incomplete = points.Store.Incomplete();
        var temporaries = storage.Temporaries();
        var holders = RepositoryLock.Holders(storage, clock);
        // An unreadable lock file may be any writer's: then only the cutoff decides.
        var liveWriters = holders.All(h => h.Readable) ? holders.Select(h => WriterTag.Of(h.Info)).OfType<string>().ToHashSet(StringComparer.Ordinal) : null;
        bool Leftover(string? writer, DateTimeOffset written) =>
            written <= cutoff || (writer is not null && liveWriters is not null && !liveWriters.Contains(writer));
        var removedPoints = incomplete.Count(p => Leftover(p.Writer, p.LastWritten) && points.Store.RemoveIncomplete(p.Source, p.Id));
        var removedTmp = temporaries.Count(t => Leftover(t.Writer, t.Written) && storage.RemoveTemporary(t.Name));
        return (removedPoints, removedTmp);
    }
}
