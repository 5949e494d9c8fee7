using ProxyBackup.Repository;
using ProxyBackup.TestSupport;
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

    [Theory]
    [InlineData(999, 1, "System datastore 999 does not exist")]
    [InlineData(null, 0, "is a SYSTEM datastore; restored disks go to an IMAGE datastore")]
    [InlineData(1, 1, "is a IMAGE datastore; a VM runs from a SYSTEM datastore")]
    public async Task A_restore_to_datastores_that_cannot_take_it_is_refused_before_anything_is_created(int? systemDs, int imageDs, string expected)
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        var images = (await w.Client.ImagePoolAsync(-2)).Count;
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = imageDs, SystemDatastoreId = systemDs }));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
        Assert.Equal(images, (await w.Client.ImagePoolAsync(-2)).Count);
        Assert.Equal(before, w.Inventory());
    }

    [Fact]
    public async Task A_restored_vm_no_host_takes_shows_the_schedulers_message_and_is_left_pending_by_name()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var hosts = await w.Client.HostPoolAsync();
        foreach (var h in hosts) w.Sim.Cloud.HostStatus(h.Id, 1);
        var shown = new List<string>();
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Restore.RestoreVmAsync(point,
            new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-back", DeployTimeout = TimeSpan.FromSeconds(10) }, new SynchronousProgress<TransferProgress>(p => shown.Add(p.What))));
        Assert.Contains("the scheduler says:", e.Message, StringComparison.Ordinal);
        Assert.Contains("Cannot dispatch VM to any Host", e.Message, StringComparison.Ordinal);
        Assert.Contains(shown, x => x.Contains("PENDING: ", StringComparison.Ordinal) && x.Contains("Cannot dispatch", StringComparison.Ordinal));
        var pending = (await w.Client.VmPoolAsync()).Single(v => v.Name == "web-back");
        Assert.Contains($"VM {pending.Id} (web-back) is left PENDING", e.Message, StringComparison.Ordinal);
        Assert.Equal(VmState.Pending, pending.State);

        // Fixing the cause is enough: the VM deploys with the disks the restore wrote.
        w.Sim.Cloud.HostStatus(hosts[0].Id, 0);
        await w.Steps.Waiter.VmRunningAsync(pending.Id, TimeSpan.FromSeconds(30));
        Assert.Equal(w.DiskSha256(web.Id, 1), w.DiskSha256(pending.Id, 1));
    }

    [Fact]
    public async Task A_restore_cancelled_while_its_vm_waits_for_the_scheduler_names_what_it_left()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        foreach (var h in await w.Client.HostPoolAsync()) w.Sim.Cloud.HostStatus(h.Id, 1);
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => w.Restore.RestoreVmAsync(point,
            new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-back" }, new SynchronousProgress<TransferProgress>(p => { if (p.What.Contains("PENDING", StringComparison.Ordinal)) cts.Cancel(); }), cts.Token));
        var job = w.Catalog.Recent(10).First(j => j.Kind == "restore");
        Assert.Contains(w.Catalog.LogOf(job.Id), l => l.Level == "warning" && l.Message.Contains("is left PENDING with the restored disks", StringComparison.Ordinal));
        Assert.Equal(VmState.Pending, (await w.Client.VmPoolAsync()).Single(v => v.Name == "web-back").State);
    }

    [Fact]
    public async Task A_failed_save_as_says_the_cause_oned_left_on_the_vm()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        w.Sim.Faults.Set([ProxyBackup.Simulator.FaultRule.Parse("one.vm.disksaveas,nth=1,action=fail-async")]);
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(web.Id, new BackupOptions()));
        Assert.Matches(@"^Image \d+ \(pb-\S+\) went to ERROR: .+: Error executing image transfer script: cannot copy disk 0", e.Message);
    }

    [Fact]
    public async Task Kvm_is_what_the_host_reports_whatever_its_driver_is_called_and_an_operator_can_allow_a_driver()
    {
        await using var w = await EngineWorld.StartAsync(configure: o => o with { AllowedVmDrivers = new HashSet<string> { "site-drv" } });
        async Task<int> VmOnHostAsync(string host, string imMad, string vmMad)
        {
            var hostId = w.Sim.Cloud.HostAllocate(host, imMad, vmMad);
            var image = (await w.Client.ImagePoolAsync()).Single(i => i.Name == "web-data").Id;
            var vmId = await w.Client.VmAllocateAsync(new OneTemplate().Set("NAME", $"vm-on-{host}").Set("CPU", 1).Set("MEMORY", 128)
                .AddVector("DISK", [new("IMAGE_ID", image)]), hold: true);
            await w.Client.VmDeployAsync(vmId, hostId);
            await w.Steps.Waiter.VmRunningAsync(vmId, TimeSpan.FromSeconds(30));
            return vmId;
        }

        // The real 6.10.5 test front-end's KVM driver was registered as 'loopvm'.
        var renamed = await VmOnHostAsync("kvm-renamed", "kvm", "loopvm");
        Assert.Single((await w.Backup.RunAsync(renamed, new BackupOptions())).Disks);

        var container = await VmOnHostAsync("lxc-01", "lxc", "lxc");
        var refused = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(container, new BackupOptions()));
        Assert.Contains("whose hypervisor is 'lxc' with the VM driver 'lxc'", refused.Message, StringComparison.Ordinal);
        Assert.Contains("--allow-vm-driver lxc", refused.Message, StringComparison.Ordinal);
        Assert.Empty((await w.Client.VmInfoAsync(container)).Snapshots.SelectMany(x => x.Snapshots));

        var allowed = await VmOnHostAsync("odd-01", "dummy", "site-drv");
        Assert.Single((await w.Backup.RunAsync(allowed, new BackupOptions())).Disks);
    }

    [Fact]
    public async Task A_backup_that_finds_no_earlier_restore_point_says_why_it_is_full()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var first = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Contains(first.Warnings, x => x.StartsWith("full backup: the repository has no earlier restore point", StringComparison.Ordinal));
        var second = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.DoesNotContain(second.Warnings, x => x.StartsWith("full backup", StringComparison.Ordinal));
        foreach (var point in w.Repository.ListRestorePoints()) w.Repository.Forget(point);
        var third = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal("full", third.RestorePoint.Tags["kind"]);
        Assert.Contains(third.Warnings, x => x.Contains("forget/retention removed them all", StringComparison.Ordinal));
        Assert.DoesNotContain((await w.Backup.RunAsync(web.Id, new BackupOptions { Full = true })).Warnings, x => x.StartsWith("full backup", StringComparison.Ordinal));
    }

}
