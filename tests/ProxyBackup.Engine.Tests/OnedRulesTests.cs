using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine.Tests;

/// <summary>What a real oned 6.10.5 does that the first simulator did not (docs/opennebula.md), met by whole jobs.</summary>
public class OnedRulesTests
{
    private static async Task<(VirtualMachine Db, VmDisk Persistent)> DbOnDatastoreAsync(EngineWorld w, string allowOrphans)
    {
        var db = await w.VmAsync("db-01");
        var persistent = db.Disks.Single(d => d.Persistent);
        w.Sim.Cloud.DatastoreUpdate(persistent.DatastoreId!.Value, $"ALLOW_ORPHANS = \"{allowOrphans}\"", 1);
        return (db, persistent);
    }

    [Fact]
    public async Task A_persistent_disk_without_orphans_keeps_exactly_one_snapshot_across_backups()
    {
        await using var w = await EngineWorld.StartAsync();
        var (db, persistent) = await DbOnDatastoreAsync(w, "NO");
        var kept = w.Steps.KeptSnapshotName(persistent.DiskId);

        var first = await w.Backup.RunAsync(db.Id, new BackupOptions());
        Assert.Contains(first.Warnings, x => x.Contains($"stays on the cloud as '{kept}'", StringComparison.Ordinal));
        var snaps = (await w.Client.VmInfoAsync(db.Id)).SnapshotsOf(persistent.DiskId);
        Assert.Equal((0, kept), (Assert.Single(snaps).Id, snaps[0].Name));
        Assert.Empty(w.Catalog.Pending());
        var clean = await w.Cleaner.CleanAsync();
        Assert.Equal((0, 0), (clean.Removed, clean.Failures.Count));

        for (var round = 1; round <= 2; round++)
        {
            w.Sim.Cloud.MutateDisk(db.Id, persistent.DiskId, blocks: 3, blockSize: 4096, seed: round);
            var sum = w.DiskSha256(db.Id, persistent.DiskId);
            var next = await w.Backup.RunAsync(db.Id, new BackupOptions());
            Assert.Equal("incremental", next.RestorePoint.Tags["kind"]);
            Assert.DoesNotContain(next.Warnings, x => x.Contains("stays on the cloud", StringComparison.Ordinal));
            var vm = await w.Client.VmInfoAsync(db.Id);
            Assert.Equal(kept, Assert.Single(vm.SnapshotsOf(persistent.DiskId)).Name);
            Assert.Empty(vm.SnapshotsOf(0));
            Assert.Empty(w.Catalog.Pending());
            var restored = await w.Restore.RestoreDiskAsImageAsync(next.RestorePoint, persistent.DiskId, datastoreId: 1);
            Assert.Equal(sum, w.ImageSha256(restored.Images.Values.Single()));
        }
    }

    [Fact]
    public async Task A_snapshot_left_by_an_older_version_that_oned_keeps_is_adopted_by_the_cleanup_not_retried_for_ever()
    {
        await using var w = await EngineWorld.StartAsync();
        var (db, persistent) = await DbOnDatastoreAsync(w, "NO");
        const string Job = "b20261101000000abcd";
        var name = $"pb-{Job}-d{persistent.DiskId}";
        var entry = w.Catalog.Record(Job, ProxyBackup.Contracts.CloudObjectKind.DiskSnapshot, db.Id, persistent.DiskId, name);
        var id = await w.Client.VmDiskSnapshotCreateAsync(db.Id, persistent.DiskId, name);
        w.Catalog.SetObjectId(entry, id);
        await w.Steps.Waiter.VmSettledAsync(db.Id, TimeSpan.FromSeconds(20));

        var report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(w.Steps.KeptSnapshotName(persistent.DiskId), Assert.Single((await w.Client.VmInfoAsync(db.Id)).SnapshotsOf(persistent.DiskId)).Name);
    }

    [Fact]
    public async Task On_a_mixed_datastore_no_snapshot_stays_and_the_disk_keeps_its_base()
    {
        await using var w = await EngineWorld.StartAsync();
        var (db, persistent) = await DbOnDatastoreAsync(w, "MIXED");
        for (var round = 0; round < 2; round++)
        {
            var result = await w.Backup.RunAsync(db.Id, new BackupOptions());
            Assert.DoesNotContain(result.Warnings, x => x.Contains("on the cloud", StringComparison.Ordinal));
            Assert.Empty((await w.Client.VmInfoAsync(db.Id)).SnapshotsOf(persistent.DiskId));
        }
        Assert.Empty(w.Catalog.Pending());
    }
}
