using System.Xml.Linq;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;
using ProxyBackup.Simulator;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// In-place restore (docs/operations.md, "In-place restore"): a restore point's content put back into
/// the VM it came from, a persistent and a non-persistent disk, the VM returned to the state it had.
/// </summary>
public class InPlaceRestoreTests
{
    /// <summary>db-01: disk 0 a non-persistent OS disk, disk 1 a persistent data disk, and a volatile swap disk.</summary>
    private static Dictionary<string, string> ShaByTarget(EngineWorld w, VirtualMachine vm) =>
        vm.Disks.Where(d => d.ImageId is not null).ToDictionary(d => d.Target!, d => w.DiskSha256(vm.Id, d.DiskId));

    /// <summary>Attached disks as loop devices (block devices, as on the appliance) and as plain files (a machine without loop devices).</summary>
    [Theory]
    [InlineData(SimDeviceMode.Auto)]
    [InlineData(SimDeviceMode.File)]
    public async Task A_running_vm_gets_the_points_bytes_on_a_persistent_and_a_non_persistent_disk_and_runs_again(SimDeviceMode devices)
    {
        await using var w = await EngineWorld.StartAsync(devices: devices);
        var db = await w.VmAsync("db-01");
        Assert.Contains(db.Disks, d => d.ImageId is not null && d.Persistent);
        Assert.Contains(db.Disks, d => d.ImageId is not null && !d.Persistent);
        var before = ShaByTarget(w, db);
        var point = (await w.Backup.RunAsync(db.Id, new BackupOptions())).RestorePoint;
        foreach (var d in db.Disks.Where(d => d.ImageId is not null)) w.Sim.Cloud.MutateDisk(db.Id, d.DiskId, 64, 4096, d.DiskId + 7);
        Assert.All(ShaByTarget(w, await w.VmAsync("db-01")), kv => Assert.NotEqual(before[kv.Key], kv.Value));

        var result = await w.Restore.RestoreInPlaceAsync(point, new InPlaceOptions { VerifyDisks = true });

        var after = await w.VmAsync("db-01");
        Assert.Equal("RUNNING", after.StateName);
        Assert.Equal(before, ShaByTarget(w, after));                   // the point's bytes, on the same targets
        Assert.Equal(db.Disks.Count, after.Disks.Count);                   // the swap disk untouched, nothing added
        Assert.Equal(db.Disks.Single(d => d.Persistent).ImageId, after.Disks.Single(d => d.Persistent).ImageId);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);
        Assert.Empty(w.Catalog.Pending());
        Assert.Contains(w.Catalog.LogOf(result.JobId), l => l.Message.Contains("chunks match restore point", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_powered_off_vm_stays_powered_off_and_refusals_change_nothing()
    {
        await using var w = await EngineWorld.StartAsync();
        var db = await w.VmAsync("db-01");
        var point = (await w.Backup.RunAsync(db.Id, new BackupOptions())).RestorePoint;
        var data = db.Disks.Single(d => d.Persistent);

        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Restore.RestoreInPlaceAsync(point, new InPlaceOptions { Disks = new HashSet<int> { 7 } }));
        Assert.Contains($"restore point {point.Id} has no disk 7", e.Message, StringComparison.Ordinal);
        await w.Client.VmDiskSnapshotCreateAsync(db.Id, data.DiskId, "kept");
        await w.Steps.Waiter.VmSettledAsync(db.Id, TimeSpan.FromMinutes(1));
        e = await Assert.ThrowsAsync<JobFailedException>(() => w.Restore.RestoreInPlaceAsync(point, new InPlaceOptions()));
        Assert.Contains($"disk {data.DiskId} has disk snapshots", e.Message, StringComparison.Ordinal);
        Assert.StartsWith($"In-place restore of VM {db.Id} (db-01) refused, nothing was changed: ", e.Message, StringComparison.Ordinal);
        Assert.Equal("RUNNING", (await w.VmAsync("db-01")).StateName);

        await w.Steps.PowerOffAsync(db.Id, hard: true, CancellationToken.None);
        var os = db.Disks.Single(d => d.ImageId is not null && !d.Persistent);
        w.Sim.Cloud.MutateDisk(db.Id, os.DiskId, 16, 4096, 3);
        var result = await w.Restore.RestoreInPlaceAsync(point, new InPlaceOptions { Disks = new HashSet<int> { os.DiskId } });
        var after = await w.VmAsync("db-01");
        Assert.Equal("POWEROFF", after.StateName);
        var restored = after.Disks.Single(d => d.Target == os.Target);
        Assert.Equal(w.DiskSha256(db.Id, restored.DiskId), ShaOfPointDisk(w, point, os.DiskId));
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(restored.ImageId, result.Images[restored.DiskId]);
    }

    /// <summary>A job that died with a disk detached: its journal entry names the DISK and its image, and the cleanup attaches it back (the VM stays powered off).</summary>
    [Fact]
    public async Task A_disk_left_detached_by_a_dead_job_is_attached_back_by_the_cleanup()
    {
        await using var w = await EngineWorld.StartAsync();
        var db = await w.VmAsync("db-01");
        var data = db.Disks.Single(d => d.Persistent);
        await w.Steps.PowerOffAsync(db.Id, hard: true, CancellationToken.None);
        w.Catalog.SetObjectId(w.Catalog.Record("r-dead", CloudObjectKind.DetachedDisk, db.Id, data.DiskId, data.Xml.ToString(SaveOptions.DisableFormatting)), data.ImageId!.Value);
        await w.Steps.DetachFromVmAsync(db.Id, data.DiskId, CancellationToken.None);
        Assert.DoesNotContain((await w.VmAsync("db-01")).Disks, d => d.Target == data.Target);

        var report = await w.Cleaner.CleanAsync();

        Assert.Equal(1, report.Removed);
        var after = await w.VmAsync("db-01");
        Assert.Equal(data.ImageId, after.Disks.Single(d => d.Target == data.Target).ImageId);
        Assert.Equal("POWEROFF", after.StateName);
        Assert.Empty(w.Catalog.Pending());
    }

    private static string ShaOfPointDisk(EngineWorld w, ProxyBackup.Repository.RestorePoint point, int diskId)
    {
        using var s = w.Repository.OpenDisk(point, diskId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(s));
    }
}
