namespace ProxyBackup.Repository;

public sealed record SourceStats(string Source, int RestorePoints, long LogicalBytes, long NonZeroBytes, int UniqueChunks, long StoredBytes);

/// <summary>
/// Logical size (what the restore points hold), stored size (the chunk files they reference, each
/// counted once), and the ratios between them: dedup = non-zero logical bytes / unique chunk bytes,
/// compression = unique chunk bytes / stored bytes. Restore points whose index cannot be read are
/// not counted; they are listed in <see cref="Unreadable"/>.
/// </summary>
public sealed record RepositoryStats(
    int RestorePoints, long LogicalBytes, long NonZeroBytes, int UniqueChunks, long UniqueChunkBytes, long StoredBytes,
    IReadOnlyList<SourceStats> Sources, IReadOnlyList<UnreadableRestorePoint> Unreadable)
{
    public double DedupRatio => UniqueChunkBytes > 0 ? (double)NonZeroBytes / UniqueChunkBytes : 1;
    public double CompressionRatio => StoredBytes > 0 ? (double)UniqueChunkBytes / StoredBytes : 1;

    internal static RepositoryStats Compute(IChunkStore chunks, StoredPoints stored)
    {
        var all = new Dictionary<ChunkId, int>();
        var perSource = new List<SourceStats>();
        long logical = 0, nonZero = 0;
        var points = 0;
        long StoredSize(ChunkId c) => chunks.Length(c) ?? 0;
        var scan = stored.Scan();
        foreach (var group in scan.Points.GroupBy(p => p.Source))
        {
            var mine = new Dictionary<ChunkId, int>();
            long sLogical = 0, sNonZero = 0;
            foreach (var point in group)
                foreach (var d in point.Disks)
                {
                    var m = stored.LoadManifest(point, d.Disk);
                    sLogical += m.DiskSize;
                    for (var i = 0; i < m.Chunks.Count; i++)
                    {
                        if (m.Chunks[i].IsZero) continue;
                        sNonZero += m.ChunkLength(i);
                        mine[m.Chunks[i]] = m.ChunkLength(i);
                    }
                }
            foreach (var (c, len) in mine) all[c] = len;
            perSource.Add(new SourceStats(group.Key, group.Count(), sLogical, sNonZero, mine.Count, mine.Keys.Sum(StoredSize)));
            logical += sLogical;
            nonZero += sNonZero;
            points += group.Count();
        }
        return new RepositoryStats(points, logical, nonZero, all.Count, all.Values.Sum(v => (long)v), all.Keys.Sum(StoredSize), perSource, scan.Unreadable);
    }
}
