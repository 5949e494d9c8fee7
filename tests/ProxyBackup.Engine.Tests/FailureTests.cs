using ProxyBackup.Repository;
using ProxyBackup.TestSupport;
using ProxyBackup.OpenNebula;
using ProxyBackup.Simulator;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine.Tests;

/// <summary>Every cloud call of the backup and restore flows fails once: the job fails cleanly, leaves nothing, and the next one works.</summary>
public class FailureTests
{
    public static TheoryData<string, string> BackupCalls => new()
    {
        { "one.vm.info", "error" }, { "one.image.info", "error" }, { "one.vm.disksnapshotcreate", "error" }, { "one.vm.disksnapshotcreate", "fail-async" },
        { "one.vm.disksaveas", "error" }, { "one.vm.disksaveas", "fail-async" }, { "one.image.persistent", "error" },
        { "one.vm.attach", "error" }, { "one.vm.attach", "fail-async" },
    };

    /// <summary>Calls that tidy up after a disk's data is read: their failure is a warning, not the job's end.</summary>
    public static TheoryData<string, string> TidyingCalls => new()
    {
        { "one.vm.detach", "error" }, { "one.image.delete", "error" }, { "one.vm.disksnapshotdelete", "error" }, { "one.vm.disksnapshotdelete", "fail-async" },
    };

    [Fact]
    public async Task A_refused_image_allocation_stops_the_restore_without_waiting_for_the_other_images()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        // One of web-01's two images is refused, the other stays in its copy until released.
        var hold = w.Sim.Cloud.HoldTransientStates(SimOperation.ImageAllocate);
        w.Sim.Faults.Set([FaultRule.Parse("one.image.allocate,nth=1,action=error,code=2048,message=injected allocation refusal")]);
        var restore = w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1 });
        var deadline = DateTime.UtcNow.AddMinutes(2);
        while (!w.Catalog.Recent(5).Any(j => j.Kind == "restore" && j.State == "failed") && DateTime.UtcNow < deadline && !restore.IsCompleted)
            await Task.Delay(20);
        // The job failed while the other image's copy was held: it did not wait for it.
        var job = w.Catalog.Recent(5).Single(j => j.Kind == "restore");
        Assert.Equal("failed", job.State);
        Assert.Contains("injected allocation refusal", job.Error);
        hold.Dispose();
        w.Sim.Faults.Set([]);
        var e = await Assert.ThrowsAnyAsync<Exception>(() => restore);
        Assert.Contains("injected allocation refusal", e.Message);
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }

    [Theory]
    [MemberData(nameof(TidyingCalls))]
    public async Task Backup_commits_its_restore_point_despite_a_failure_of(string method, string action)
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse($"{method},nth=1,action={action},code=2048,message=injected {method} failure")]);
        var result = await w.Backup.RunAsync(web.Id, new BackupOptions());
        w.Sim.Faults.Set([]);
        Assert.Equal(2, result.Disks.Count);
        Assert.Equal(result.RestorePoint.Id, Assert.Single(w.Repository.ListRestorePoints()).Id);
        Assert.Contains(result.Warnings, x => x.Contains("is left on the cloud for the next cleanup pass", StringComparison.Ordinal));
        Assert.NotEmpty(w.Catalog.Pending());
        var report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }

    [Theory]
    [MemberData(nameof(BackupCalls))]
    public async Task Backup_survives_a_failure_of(string method, string action)
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        // Skip the calls made before the first snapshot where a method is also used for reading (nth picks a call inside the flow).
        var nth = method is "one.vm.info" or "one.image.info" ? 3 : 1;
        w.Sim.Faults.Set([FaultRule.Parse($"{method},nth={nth},action={action},code=2048,message=injected {method} failure")]);
        var e = await Assert.ThrowsAnyAsync<Exception>(() => w.Backup.RunAsync(web.Id, new BackupOptions()));
        Assert.False(string.IsNullOrWhiteSpace(e.Message));
        if (action == "error") Assert.Contains("injected", e.Message, StringComparison.Ordinal);
        w.Sim.Faults.Set([]);
        // Whatever the failure left (a failed detach leaves the disk attached), the next cleanup pass removes.
        await w.Cleaner.CleanAsync();
        Assert.Empty(w.Catalog.Pending());
        Assert.Empty(w.Repository.ListRestorePoints());
        AssertClean(before, w.Inventory());
        var ok = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal(2, ok.Disks.Count);
        AssertClean(before, w.Inventory());
    }

    public static TheoryData<string, string> RestoreCalls => new()
    {
        { "one.image.allocate", "error" }, { "one.image.allocate", "fail-async" }, { "one.vm.attach", "error" }, { "one.vm.detach", "error" },
        { "one.image.persistent", "error" }, { "one.template.allocate", "error" }, { "one.template.instantiate", "error" },
    };

    [Theory]
    [MemberData(nameof(RestoreCalls))]
    public async Task Restore_survives_a_failure_of(string method, string action)
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse($"{method},nth=1,action={action},code=2048,message=injected {method} failure")]);
        await Assert.ThrowsAnyAsync<Exception>(() => w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1 }));
        w.Sim.Faults.Set([]);
        await w.Cleaner.CleanAsync();
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
        var ok = await w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1 });
        Assert.NotNull(ok.VmId);
    }

    [Fact]
    public async Task A_detach_the_guest_refuses_once_is_retried_and_the_job_succeeds()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.detach,nth=1,action=fail-async")]);
        var result = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal(2, result.Disks.Count);
        AssertClean(before, w.Inventory());
        var restored = await w.Restore.RestoreVmAsync(result.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1 });
        Assert.NotNull(restored.VmId);
    }

    [Fact]
    public async Task A_cancelled_backup_cleans_up_at_once()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        using var cts = new CancellationTokenSource();
        var progress = new SynchronousProgress<TransferProgress>(_ => cts.Cancel());
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => w.Backup.RunAsync(web.Id, new BackupOptions(), progress, cts.Token));
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }

    [Fact]
    public async Task A_backup_cancelled_while_oned_creates_its_snapshot_removes_the_snapshot_at_once()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,action=delay,latency=1000")]);
        using var cts = new CancellationTokenSource();
        var job = w.Backup.RunAsync(web.Id, new BackupOptions(), null, cts.Token);
        while (!w.Catalog.Pending().Any(e => e.Kind == CloudObjectKind.DiskSnapshot)) await Task.Delay(10);
        await Task.Delay(200);  // the request is with oned now
        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => job);

        w.Sim.Faults.Set([]);
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }

    [Fact]
    public async Task An_image_already_deleted_when_the_cleanup_comes_is_done_with_not_kept_for_later()
    {
        // A job cancelled while it waited for its own delete of the image leaves the journal entry.
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        var imageId = (await w.Client.ImagePoolAsync(-3)).Max(i => i.Id) + 1;
        var entry = w.Catalog.Record("b-cancelled", CloudObjectKind.Image, web.Id, 0, "pb-b-cancelled-vm1-d0");
        w.Catalog.SetObjectId(entry, imageId);

        var report = await w.Cleaner.CleanAsync();

        Assert.Empty(report.Failures);
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }


    [Theory]
    [InlineData("drop-before")]
    [InlineData("error")]
    public async Task A_snapshot_delete_that_fails_after_the_data_is_read_keeps_the_restore_point_and_leaves_the_snapshot_to_the_cleanup(string action)
    {
        // Snapshot ids are per disk: both disks of web-01 get snapshot 0. Forgetting the first
        // disk's entry must not forget the second's, or its snapshot would leak for good.
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse($"one.vm.disksnapshotdelete,nth=2,action={action},code=2048,message=injected")]);
        var result = await w.Backup.RunAsync(web.Id, new BackupOptions());
        w.Sim.Faults.Set([]);
        Assert.Contains(result.Warnings, x => x.StartsWith("snapshot 0 of disk 1 is left on the cloud for the next cleanup pass", StringComparison.Ordinal));
        Assert.Equal(result.RestorePoint.Id, w.Repository.Latest(w.Backup.Sources.Of(web.Id))?.Id);
        Assert.Equal(1, w.Inventory()["disk_snapshots"]);
        var left = Assert.Single(w.Catalog.Pending());
        Assert.Equal((CloudObjectKind.DiskSnapshot, 1), (left.Kind, left.DiskId));

        var report = await w.Cleaner.CleanAsync();
        Assert.Equal((1, 0), (report.Removed, report.Failures.Count));
        Assert.Empty(w.Catalog.Pending());
        AssertClean(before, w.Inventory());
    }

    [Fact]
    public async Task A_restore_whose_temporary_template_cannot_be_deleted_succeeds_and_leaves_the_template_to_the_cleanup()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        w.Sim.Faults.Set([FaultRule.Parse("one.template.delete,nth=1,action=error,code=2048,message=injected")]);
        var restored = await w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1 });
        w.Sim.Faults.Set([]);
        Assert.NotNull(restored.VmId);
        Assert.Contains(w.Catalog.LogOf(restored.JobId), l => l.Level == "warning" && l.Message.Contains("template", StringComparison.Ordinal));
        var entry = Assert.Single(w.Catalog.Pending());
        Assert.Equal(CloudObjectKind.Template, entry.Kind);
        await w.Cleaner.CleanAsync();
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(before["templates"], w.Inventory()["templates"]);
        Assert.Equal(VmState.Active, (await w.Client.VmInfoAsync(restored.VmId!.Value)).State);   // the restored VM is untouched
    }

    private static void AssertClean(Dictionary<string, object?> before, Dictionary<string, object?> after)
    {
        Assert.Equal(before["disk_snapshots"], after["disk_snapshots"]);
        Assert.Equal(before["proxy_disks"], after["proxy_disks"]);
        Assert.Equal(before["proxy_devices"], after["proxy_devices"]);
        Assert.Equal(before["templates"], after["templates"]);
        Assert.Equal(((List<object?>)before["images"]!).Cast<string>().Order(), ((List<object?>)after["images"]!).Cast<string>().Order());
        Assert.Equal(0, after["busy_vms"]);
    }
}
