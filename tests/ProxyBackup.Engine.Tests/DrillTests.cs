using ProxyBackup.Contracts;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// Restore drills (docs/operations.md, "Restore drills"): the latest point restored into a sandbox,
/// its disks read back against the point, the VM run and checked, its recovery time recorded, and
/// nothing left behind, whatever the outcome.
/// </summary>
public class DrillTests
{
    private static void AssertSameInventory(Dictionary<string, object?> before, Dictionary<string, object?> after)
    {
        Assert.Equal(before["vms"], after["vms"]);
        Assert.Equal(before["templates"], after["templates"]);
        Assert.Equal(((List<object?>)before["images"]!).Order(), ((List<object?>)after["images"]!).Order());
        Assert.Equal(before["proxy_disks"], after["proxy_disks"]);
    }

    [Fact]
    public async Task A_drill_runs_the_latest_point_in_a_sandbox_records_its_recovery_time_and_leaves_nothing()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        var seen = Path.Combine(w.Root, "check.txt");

        var result = await w.Restore.DrillAsync(point, new DrillOptions { ImageDatastoreId = 1, CheckCommand = $"echo \"$PROXYBACKUP_VM_NAME|$PROXYBACKUP_VM_IPS|$PROXYBACKUP_DRILLED_VM_ID\" > {seen}" });

        Assert.True(result.Succeeded, result.Failure);
        Assert.True(result.LeftNothing, string.Join("; ", result.Left));
        Assert.True(result.RecoveryTime > TimeSpan.Zero);
        var check = (await File.ReadAllTextAsync(seen)).Trim().Split('|');
        Assert.Matches(@"^drill-web-01-\d{8}T\d{6}$", check[0]);   // a name that says so
        Assert.Equal("", check[1]);                                 // no NICs: the sandbox reaches no network
        Assert.Equal(web.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), check[2]);
        AssertSameInventory(before, w.Inventory());
        Assert.Empty(w.Catalog.Pending());
        var recorded = w.Catalog.LastJobs("drill")[web.Id];
        Assert.Equal(("succeeded", point.Id), (recorded.State, recorded.RestorePoint));
        Assert.Equal(result.RecoveryTime!.Value.TotalSeconds, recorded.Measured!.Value.TotalSeconds, 3);
        Assert.Equal(2, w.Catalog.LogOf(result.JobId).Count(l => l.Message.Contains("chunks match restore point", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_drill_whose_check_fails_is_recorded_failed_and_still_leaves_nothing()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();

        var result = await w.Restore.DrillAsync(point, new DrillOptions { ImageDatastoreId = 1, CheckCommand = "echo the service did not answer; exit 4" });

        Assert.False(result.Succeeded);
        Assert.Equal("the check command exited 4: the service did not answer", result.Failure);
        Assert.NotNull(result.RecoveryTime);                        // it ran; the check is what failed
        Assert.True(result.LeftNothing);
        AssertSameInventory(before, w.Inventory());
        Assert.Equal("failed", w.Catalog.LastJobs("drill")[web.Id].State);
    }

    /// <summary>A drill's process died with its sandbox up: the journal names the VM and its images, and a cleanup pass removes them.</summary>
    [Fact]
    public async Task A_sandbox_left_by_a_dead_drill_is_removed_by_the_cleanup()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        var made = await w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1, Name = "drill-web-01-left", Nics = NicMode.NoNic, OriginalOwner = false });
        w.Catalog.SetObjectId(w.Catalog.Record("d-dead", CloudObjectKind.SandboxVm, web.Id, -1, "drill-web-01-left"), made.VmId!.Value);
        foreach (var (disk, image) in made.Images)
            w.Catalog.SetObjectId(w.Catalog.Record("d-dead", CloudObjectKind.Image, web.Id, disk, $"drill-web-01-left-disk-{disk}"), image);

        var report = await w.Cleaner.CleanAsync();

        Assert.Empty(report.Failures);
        Assert.Equal(1 + made.Images.Count, report.Removed);
        AssertSameInventory(before, w.Inventory());
        Assert.Empty(w.Catalog.Pending());
    }
}
