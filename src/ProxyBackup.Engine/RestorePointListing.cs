using System.Globalization;
using ProxyBackup.Contracts;
using ProxyBackup.Repository;

namespace ProxyBackup.Engine;

/// <summary>
/// Keeps the catalog's restore point list in step with the repository, which stays the source of
/// truth (docs/glossary.md, "Index": one thing): the engine's tags (vm_id, vm_name, kind) become columns.
/// </summary>
public static class RestorePointListing
{
    public static ListedRestorePoint ToListed(RestorePoint point) => new(
        point.Source, point.Id, point.Time,
        int.TryParse(point.Tags.GetValueOrDefault("vm_id"), NumberStyles.None, CultureInfo.InvariantCulture, out var vm) ? vm : -1,
        point.Tags.GetValueOrDefault("vm_name") ?? "", point.Tags.GetValueOrDefault("kind") ?? "",
        point.Disks.Count, point.Disks.Sum(d => d.Size));

    /// <summary>Makes the index hold exactly the repository's restore points of <paramref name="source"/>.</summary>
    public static void SyncSource(this IRestorePointList index, BackupRepository repository, string source) =>
        index.Sync(source, [.. repository.ListRestorePoints(source).Select(ToListed)]);

    /// <summary>
    /// Refills the whole index from the repository alone: losing the catalog loses no backup. Points
    /// another cloud made (their <c>cloud</c> tag names another, docs/operations.md, "Clouds sharing a
    /// repository") are left out: their VM IDs are not this cloud's.
    /// </summary>
    public static int Rebuild(this IRestorePointList index, BackupRepository repository, VmSources sources)
    {
        var mine = repository.ListRestorePoints().Where(p => !p.Tags.TryGetValue("cloud", out var cloud) || cloud == (sources.Cloud ?? "")).ToList();
        index.ReplaceAll([.. mine.Select(ToListed)]);
        return mine.Count;
    }
}
