namespace ProxyBackup.Repository;

/// <summary>
/// The order in which backup and restore take a disk's chunks: from several places of the disk in
/// turn. Regions of a disk differ (zeros, compressible, incompressible data): taken in disk order,
/// the workers compress or decompress for a while with the disk idle, then move raw data with the
/// cores idle; taken from several regions at once, both stay busy (docs/operations.md, "Tuning the
/// pipeline").
/// </summary>
internal static class DiskRegions
{
    /// <summary>Chunk indexes 0..count-1, one from each of <paramref name="regions"/> equal regions in turn.</summary>
    public static IEnumerable<int> Interleaved(int count, int regions)
    {
        var span = (count + regions - 1) / regions;
        for (var k = 0; k < span; k++)
            for (var s = 0; s < regions; s++)
                if (s * span + k < count) yield return s * span + k;
    }
}
