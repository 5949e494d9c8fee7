using ProxyBackup.Simulator;
using ProxyBackup.OpenNebula;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine.Tests;

public class BackupRestoreTests
{
    private static void AssertSameInventory(Dictionary<string, object?> expected, Dictionary<string, object?> actual)
    {
        foreach (var (k, v) in expected)
            Assert.True(Equals(v, actual[k]) || (v is System.Collections.IEnumerable a && actual[k] is System.Collections.IEnumerable b && a.Cast<object>().SequenceEqual(b.Cast<object>())),
                $"{k}: before {Show(v)}, after {Show(actual[k])}");
    }

    private static string Show(object? o) => o is System.Collections.IEnumerable e and not string ? string.Join(",", e.Cast<object>()) : $"{o}";

    [Fact]
    public async Task A_backup_says_its_disks_are_read_before_it_detaches_the_last_one_deletes_its_image_and_commits()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var source = w.Backup.Sources.Of(web.Id);
        using var hold = w.Sim.Cloud.HoldTransientStates(SimOperation.ImageDelete);
        var calls = 0;
        var seen = new TaskCompletionSource<(object? ProxyDisks, int Points)>(TaskCreationOptions.RunContinuationsAsynchronously);
        var job = w.Backup.RunAsync(web.Id, new BackupOptions
        {
            ExcludeDisks = new HashSet<int> { 0 },   // one disk: its image delete is the job's only one, held below
            DisksRead = () =>
            {
                Interlocked.Increment(ref calls);
                seen.TrySetResult((w.Inventory()["proxy_disks"], w.Repository.ListRestorePoints(source).Count));
            },
        });
        var (proxyDisks, points) = await seen.Task.WaitAsync(TimeSpan.FromMinutes(2));
        Assert.Equal(2, proxyDisks);   // the proxy's own disk and the job's, not detached yet
        Assert.Equal(0, points);
        // The image delete is held: the job cannot have ended, so the call came before it.
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (w.Sim.Cloud.HeldOperations == 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(1, w.Sim.Cloud.HeldOperations);
        Assert.False(job.IsCompleted);
        hold.Dispose();
        var result = await job;
        Assert.Equal(1, calls);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);
        Assert.Equal(result.RestorePoint.Id, Assert.Single(w.Repository.ListRestorePoints(source)).Id);
    }

    [Fact]
    public async Task Full_then_incremental_backup_and_whole_vm_restore_are_bit_exact_and_leave_nothing_behind()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        var sums0 = web.Disks.ToDictionary(d => d.DiskId, d => w.DiskSha256(web.Id, d.DiskId));

        var full = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal("full", full.RestorePoint.Tags["kind"]);
        Assert.Equal(2, full.Disks.Count);
        AssertSameInventory(before, w.Inventory());
        Assert.Empty(w.Catalog.Pending());

        w.Sim.Cloud.MutateDisk(web.Id, 1, blocks: 3, blockSize: 4096, seed: 5);
        var sums1 = web.Disks.ToDictionary(d => d.DiskId, d => w.DiskSha256(web.Id, d.DiskId));
        var incr = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal(full.RestorePoint.Id, incr.RestorePoint.Parent);
        Assert.Equal(0, incr.Disks.Single(d => d.DiskId == 0).Stats.NewChunks);
        Assert.InRange(incr.Disks.Single(d => d.DiskId == 1).Stats.NewChunks, 1, 3);
        AssertSameInventory(before, w.Inventory());

        // Restore the full restore point as a new VM: its disks hold what the source held then.
        var restored = await w.Restore.RestoreVmAsync(full.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1, SystemDatastoreId = 0 });
        var vm = await w.Client.VmInfoAsync(restored.VmId!.Value);
        Assert.Equal(VmState.Active, vm.State);
        Assert.Equal(LcmState.Running, vm.LcmState);
        foreach (var (diskId, sum) in sums0) Assert.Equal(sum, w.DiskSha256(vm.Id, diskId));
        Assert.All(vm.Nics, n => Assert.NotEqual(web.Nics[0].Mac, n.Mac));
        Assert.DoesNotContain(vm.Template.Elements(), e => e.Name.LocalName == "TEMPLATE_ID" && e.Value == web.Template.Text("TEMPLATE_ID"));

        var second = await w.Restore.RestoreVmAsync(incr.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-01-copy", Nics = NicMode.NoNic });
        var copy = await w.Client.VmInfoAsync(second.VmId!.Value);
        Assert.Equal("web-01-copy", copy.Name);
        Assert.Empty(copy.Nics);
        foreach (var (diskId, sum) in sums1) Assert.Equal(sum, w.DiskSha256(copy.Id, diskId));

        var inv = w.Inventory();
        Assert.Equal(0, inv["disk_snapshots"]);
        Assert.Equal(1, inv["proxy_disks"]);
        Assert.Equal(0, inv["templates"]);
        Assert.Empty(w.Catalog.Pending());
    }

    [Fact]
    public async Task A_vm_with_a_persistent_disk_and_a_volatile_disk()
    {
        await using var w = await EngineWorld.StartAsync();
        var db = await w.VmAsync("db-01");
        var result = await w.Backup.RunAsync(db.Id, new BackupOptions());
        Assert.Equal(2, result.Disks.Count);
        Assert.Contains(result.Warnings, x => x.Contains("volatile", StringComparison.Ordinal));
        var restored = await w.Restore.RestoreVmAsync(result.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1 });
        var vm = await w.Client.VmInfoAsync(restored.VmId!.Value);
        Assert.Equal(3, vm.Disks.Count);
        Assert.True(vm.Disks.Single(d => d.DiskId == 1).Persistent);
        Assert.True(vm.Disks.Single(d => d.IsVolatile).Type is "swap");
        Assert.Equal(w.DiskSha256(db.Id, 1), w.DiskSha256(vm.Id, 1));
    }

    [Fact]
    public async Task A_single_disk_restores_as_an_image_and_excluded_disks_come_back_empty()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var result = await w.Backup.RunAsync(web.Id, new BackupOptions { ExcludeDisks = new HashSet<int> { 0 } });
        Assert.Single(result.Disks);
        var one = await w.Restore.RestoreDiskAsImageAsync(result.RestorePoint, 1, 1);
        var image = await w.Client.ImageInfoAsync(one.Images[1]);
        Assert.Equal(ImageState.Ready, image.State);
        Assert.False(image.Persistent); // as the original disk
        var vm = await w.Restore.RestoreVmAsync(result.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1 });
        var restored = await w.Client.VmInfoAsync(vm.VmId!.Value);
        Assert.Equal(2, restored.Disks.Count);
        Assert.Equal(w.DiskSha256(web.Id, 1), w.DiskSha256(restored.Id, 1));
        using var empty = File.OpenRead(w.Sim.Cloud.DiskContentPath(restored.Id, 0));
        var buf = new byte[1 << 20];
        int n;
        while ((n = empty.Read(buf)) > 0) Assert.False(buf.AsSpan(0, n).ContainsAnyExcept((byte)0));
    }

    [Fact]
    public async Task A_damaged_list_of_excluded_disks_is_refused_before_anything_is_made_and_a_single_disk_still_restores()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var result = await w.Backup.RunAsync(web.Id, new BackupOptions { ExcludeDisks = new HashSet<int> { 0 } });
        var edited = result.RestorePoint with { Tags = new Dictionary<string, string>(result.RestorePoint.Tags) { ["disks_excluded"] = "0;x" } };
        var before = w.Inventory();
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Restore.RestoreVmAsync(edited, new RestoreVmOptions { ImageDatastoreId = 1 }));
        Assert.Contains("disks_excluded", e.Message, StringComparison.Ordinal);
        Assert.Equal(((List<object?>)before["images"]!).Count, ((List<object?>)w.Inventory()["images"]!).Count);
        Assert.Empty(w.Catalog.Pending());
        var one = await w.Restore.RestoreDiskAsImageAsync(edited, 1, 1);
        Assert.Equal(ImageState.Ready, (await w.Client.ImageInfoAsync(one.Images[1])).State);
    }

    [Fact]
    public async Task Refusals_say_what_is_wrong()
    {
        await using var w = await EngineWorld.StartAsync();
        await Assert.ThrowsAsync<OneNotFoundException>(() => w.Backup.RunAsync(424242, new BackupOptions()));
        var proxy = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(w.ProxyId, new BackupOptions()));
        Assert.Contains("proxy VM itself", proxy.Message, StringComparison.Ordinal);
        var held = await w.Client.VmAllocateAsync(new OneTemplate().Set("NAME", "on-hold").Set("CPU", 1).Set("MEMORY", 128), hold: true);
        var state = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(held, new BackupOptions()));
        Assert.Contains("HOLD", state.Message, StringComparison.Ordinal);
        Assert.Contains("RUNNING, POWEROFF or SUSPENDED", state.Message, StringComparison.Ordinal);
        var web = await w.VmAsync("web-01");
        using (w.Catalog.Acquire(web.Id, "other-job", "backup"))
        {
            var busy = await Assert.ThrowsAsync<VmBusyException>(() => w.Backup.RunAsync(web.Id, new BackupOptions()));
            Assert.Contains("other-job", busy.Message, StringComparison.Ordinal);
        }
    }
}

public class SnapshotManagerTests
{
    [Fact]
    public async Task Revert_powers_off_only_when_allowed_and_resumes()
    {
        await using var w = await EngineWorld.StartAsync();
        var manager = new SnapshotManager(w.Steps, w.Catalog);
        var web = await w.VmAsync("web-01");
        var original = w.DiskSha256(web.Id, 0);
        var snap = await manager.CreateAsync(web.Id, 0, "before-upgrade");
        Assert.Contains(await manager.ListAsync(web.Id), x => x.DiskId == 0 && x.Snapshot.Id == snap && x.Snapshot.Name == "before-upgrade");
        w.Sim.Cloud.MutateDisk(web.Id, 0, 4, 4096, 1);
        Assert.NotEqual(original, w.DiskSha256(web.Id, 0));

        var refused = await Assert.ThrowsAsync<JobFailedException>(() => manager.RevertAsync(web.Id, new Dictionary<int, int> { [0] = snap }, allowPowerOff: false, hard: false));
        Assert.Contains("--poweroff", refused.Message, StringComparison.Ordinal);
        await manager.RevertAsync(web.Id, new Dictionary<int, int> { [0] = snap }, allowPowerOff: true, hard: false);
        Assert.Equal(original, w.DiskSha256(web.Id, 0));
        var vm = await w.Client.VmInfoAsync(web.Id);
        Assert.Equal(ProxyBackup.OpenNebula.LcmState.Running, vm.LcmState);

        await manager.DeleteAsync(web.Id, 0, snap);
        Assert.Empty(await manager.ListAsync(web.Id));
        await Assert.ThrowsAsync<JobFailedException>(() => manager.RevertAsync(web.Id, new Dictionary<int, int> { [0] = 99 }, true, false));
    }
}

public class ConcurrencyTests
{
    [Fact]
    public async Task Several_vms_back_up_at_once_through_one_proxy()
    {
        await using var w = await EngineWorld.StartAsync();
        var names = new[] { "web-01", "db-01", "dev-01" };
        var vms = new List<ProxyBackup.OpenNebula.VirtualMachine>();
        foreach (var n in names) vms.Add(await w.VmAsync(n));
        var sums = vms.ToDictionary(v => v.Id, v => v.Disks.Where(d => !d.IsVolatile).ToDictionary(d => d.DiskId, d => w.DiskSha256(v.Id, d.DiskId)));
        var results = await Task.WhenAll(vms.Select(v => w.Backup.RunAsync(v.Id, new BackupOptions())));
        Assert.Equal(3, results.Length);
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);
        foreach (var r in results)
            foreach (var d in r.Disks)
            {
                var restored = Path.Combine(w.Root, $"vm{r.VmId}-d{d.DiskId}.img");
                await w.Repository.RestoreDiskAsync(r.RestorePoint, d.DiskId.ToString(System.Globalization.CultureInfo.InvariantCulture), restored);
                using var f = File.OpenRead(restored);
                Assert.Equal(sums[r.VmId][d.DiskId], Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(f)));
            }
    }
}
