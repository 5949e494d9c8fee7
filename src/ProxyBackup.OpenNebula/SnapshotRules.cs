namespace ProxyBackup.OpenNebula;

/// <summary>
/// Whether oned will delete a VM disk snapshot, per the disk's ALLOW_ORPHANS mode
/// (docs/opennebula.md, "Snapshot delete rules"). Asked before a delete so that a snapshot oned
/// keeps for good is recognised as such, not retried on every cleanup pass.
/// </summary>
public static class SnapshotRules
{
    /// <summary>Why oned refuses to delete the snapshot, or null when it allows it.</summary>
    public static string? DeleteRefusal(DiskSnapshotSet set, int snapshotId, VmDisk disk)
    {
        var snapshot = set.Snapshots.FirstOrDefault(s => s.Id == snapshotId);
        if (snapshot is null) return "it does not exist";
        switch (ModeOf(set, disk))
        {
            case "YES":
                return null;
            case "MIXED":
                if (snapshot.Active) return "it is the active snapshot (ALLOW_ORPHANS=MIXED)";
                return snapshot.Children.Count > 0 ? "it has children (ALLOW_ORPHANS=MIXED)" : null;
            default:
                if (disk.Persistent && snapshotId == 0)
                    return "it is snapshot 0 of a persistent disk, which oned keeps while the datastore has ALLOW_ORPHANS=NO";
                if (snapshot.Children.Count > 1) return "it has more than one child (ALLOW_ORPHANS=NO)";
                if (snapshot.Children.Count == 0) return null;
                if (snapshot.Active) return "it is the active snapshot and has a child (ALLOW_ORPHANS=NO)";
                var child = set.Snapshots.FirstOrDefault(s => s.Id == snapshot.Children[0]);
                if (child is not null && (child.Children.Count > 1 || (child.Children.Count == 1 && child.Active)))
                    return "its child has children (ALLOW_ORPHANS=NO)";
                var parent = set.Snapshots.FirstOrDefault(s => s.Id == snapshot.Parent);
                return parent is { Children.Count: > 1 } ? "its parent has more than one child (ALLOW_ORPHANS=NO)" : null;
        }
    }

    /// <summary>The mode oned applies: FORMAT is resolved per disk (qcow2 a tree, raw flat); absent means NO.</summary>
    private static string ModeOf(DiskSnapshotSet set, VmDisk disk)
    {
        var mode = (set.AllowOrphans ?? "NO").ToUpperInvariant();
        if (mode != "FORMAT") return mode;
        return string.Equals(disk.Format, "qcow2", StringComparison.OrdinalIgnoreCase) ? "NO" : "YES";
    }
}
