using ProxyBackup.Contracts;
using ProxyBackup.Simulator;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// Every call of the backup and restore flows, refused, with the answer lost before or after oned
/// acted, or slowed down, and every asynchronous operation stuck or failed by its driver: whatever
/// the job's outcome, the job and the cleanup passes leave nothing on the cloud (a stuck operation
/// once its driver has given up), a restore point exists only when the job said it succeeded, and
/// the next job is green. (Refusals with a specific cause are in <see cref="FailureTests"/>.)
/// </summary>
public class FaultMatrixTests
{
    private static readonly string[] Kinds = ["error", "drop-before", "drop-after", "delay"];

    /// <summary>The calls oned answers at once and finishes later (a driver's work): they can also hang or fail there.</summary>
    private static readonly HashSet<string> AsyncMethods =
    [
        "one.vm.disksnapshotcreate", "one.vm.disksaveas", "one.vm.attach", "one.vm.detach", "one.image.delete", "one.vm.disksnapshotdelete",
        "one.image.allocate",
    ];

    private static readonly string[] AsyncKinds = ["stuck", "fail-async"];

    private static readonly string[] BackupMethods =
    [
        "one.vm.info", "one.image.info", "one.vm.disksnapshotcreate", "one.vm.disksaveas", "one.image.persistent",
        "one.vm.attach", "one.vm.detach", "one.image.delete", "one.vm.disksnapshotdelete",
    ];

    private static readonly string[] RestoreMethods =
    [
        "one.datastorepool.info", "one.image.allocate", "one.vm.attach", "one.vm.detach", "one.image.persistent",
        "one.template.allocate", "one.template.instantiate", "one.template.delete",
    ];

    public static TheoryData<string, string> BackupFaults => Matrix(BackupMethods);
    public static TheoryData<string, string> RestoreFaults => Matrix(RestoreMethods);

    private static TheoryData<string, string> Matrix(string[] methods)
    {
        var data = new TheoryData<string, string>();
        foreach (var m in methods)
            foreach (var k in AsyncMethods.Contains(m) ? [.. Kinds, .. AsyncKinds] : Kinds) data.Add(m, k);
        return data;
    }

    internal static Task<EngineWorld> WorldAsync(ShiftedClock clock) => EngineWorld.StartAsync(configure: o => o with { Time = clock });

    /// <summary>
    /// Runs a job with one call's answer refused, dropped or delayed, or its operation stuck or
    /// failed: its result, or null when it failed with a user-facing error. Where an operation is
    /// stuck, the job runs with short bounds (it must end by them); what follows runs with bounds
    /// a loaded machine never reaches.
    /// </summary>
    internal static async Task<T?> UnderFaultAsync<T>(EngineWorld w, string method, string kind, Func<Task<T>> job) where T : class
    {
        var bounds = TimeSpan.FromSeconds(1.5);
        var clock = w.Steps.Options.Time;
        if (kind == "stuck") w.Rewire(o => o with { Time = clock, OperationTimeout = bounds, CopyTimeout = bounds, DeviceTimeout = bounds });
        // Reads also happen before the first snapshot: the third one falls inside the flow.
        w.Sim.Faults.Set([FaultRule.Parse($"{method},nth={(method is "one.vm.info" or "one.image.info" ? 3 : 1)},action={kind},latency=300")]);
        try { return await job(); }
        catch (Exception e) when (e is UserFacingException)
        {
            Assert.False(string.IsNullOrWhiteSpace(e.Message));
            return null;
        }
        finally
        {
            w.Sim.Faults.Set([]);
            // The driver of a stuck operation gives up at last (what an operator's 'onevm recover' also ends).
            w.Sim.Cloud.EndStuckOperations();
            if (kind == "stuck") w.Rewire(o => o with { Time = clock });
        }
    }

    [Theory]
    [MemberData(nameof(BackupFaults))]
    public async Task A_backup_ends_clean_whatever_happens_to_an_answer(string method, string kind)
    {
        var clock = new ShiftedClock();
        await using var w = await WorldAsync(clock);
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        var result = await UnderFaultAsync(w, method, kind, () => w.Backup.RunAsync(web.Id, new BackupOptions()));
        if (kind == "delay") Assert.NotNull(result);
        Assert.Equal(result is null ? 0 : 1, w.Repository.ListRestorePoints().Count);

        await CleanUpAsync(w, clock);
        AssertNothingLeft(before, w.Inventory());
        var next = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal(2, next.Disks.Count);
        AssertNothingLeft(before, w.Inventory());
    }

    [Fact]
    public async Task A_stuck_leftover_is_paused_by_the_cleanup_pass_and_does_not_hold_up_another_vms_backup()
    {
        await using var w = await EngineWorld.StartAsync(configure: o => o with { OperationTimeout = TimeSpan.FromSeconds(3) });
        var web = await w.VmAsync("web-01");
        // web-01's snapshot delete never ends: the backup is committed, the snapshot left to the cleanup.
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotdelete,nth=1,action=stuck")]);
        var stuck = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Contains(stuck.Warnings, x => x.Contains("is left on the cloud for the next cleanup pass", StringComparison.Ordinal));
        w.Sim.Faults.Set([]);

        var first = await w.Cleaner.CleanAsync(objectBudget: TimeSpan.FromSeconds(1));
        Assert.Contains(first.Pending, x => x.Contains("did not go within 1 s; tried again after", StringComparison.Ordinal));
        var second = await w.Cleaner.CleanAsync(objectBudget: TimeSpan.FromSeconds(1));
        Assert.Contains(second.Pending, x => x.Contains("did not go within its time last pass", StringComparison.Ordinal));
        Assert.Empty(second.Failures);

        var db = await w.VmAsync("db-01");
        Assert.Equal(2, (await w.Backup.RunAsync(db.Id, new BackupOptions())).Disks.Count);
    }

    [Fact]
    public async Task A_cancelled_job_whose_leftover_is_stuck_ends_within_its_cleanup_budget_and_keeps_the_entry()
    {
        await using var w = await EngineWorld.StartAsync(configure: o => o with { CancelledCleanupBudget = TimeSpan.FromSeconds(1) });
        var web = await w.VmAsync("web-01");
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,nth=1,action=stuck")]);
        using var cts = new CancellationTokenSource();
        var job = w.Backup.RunAsync(web.Id, new BackupOptions(), ct: cts.Token);
        while (!job.IsCompleted && !w.Catalog.Pending().Any(e => e.ObjectId is not null)) await Task.Delay(50);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => job);
        var record = w.Catalog.Recent(5).Single(j => j.Kind == "backup");
        Assert.Equal(("failed", "cancelled"), (record.State, record.Error));
        Assert.Contains(w.Catalog.LogOf(record.Id), l => l.Message.StartsWith("left on the cloud for the next cleanup pass", StringComparison.Ordinal) && l.Message.Contains("the cleanup's time ran out", StringComparison.Ordinal));
        Assert.Equal(CloudObjectKind.DiskSnapshot, Assert.Single(w.Catalog.Pending()).Kind);
    }

    /// <summary>
    /// A cleanup pass fails nothing. A create whose answer was lost before oned saw it cannot be told
    /// from one oned is still working on: its entry stays pending (no id, nothing of its name) until
    /// the in-flight grace has passed, and the pass after that drops it.
    /// </summary>
    internal static async Task CleanUpAsync(EngineWorld w, ShiftedClock clock)
    {
        var report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        var names = ((List<object?>)w.Inventory()["images"]!).Cast<string>().ToHashSet();
        Assert.Equal(report.Pending.Count, w.Catalog.Pending().Count);
        Assert.All(w.Catalog.Pending(), e => Assert.True(e.ObjectId is null && !names.Contains(e.Name), $"{e.Kind} {e.Name} was left pending"));
        clock.Offset = CloudSteps.InFlightGrace + TimeSpan.FromMinutes(1);
        report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        Assert.Empty(w.Catalog.Pending());
    }

    private static void AssertNothingLeft(Dictionary<string, object?> before, Dictionary<string, object?> after)
    {
        foreach (var key in new[] { "disk_snapshots", "proxy_disks", "proxy_devices", "templates" }) Assert.Equal(before[key], after[key]);
        Assert.Equal(((List<object?>)before["images"]!).Cast<string>().Order(), ((List<object?>)after["images"]!).Cast<string>().Order());
        Assert.Equal(0, after["busy_vms"]);
    }
}

/// <summary>The restore half of <see cref="FaultMatrixTests"/>: a class of its own, so that the two halves run side by side.</summary>
public class RestoreFaultMatrixTests
{
    [Theory]
    [MemberData(nameof(FaultMatrixTests.RestoreFaults), MemberType = typeof(FaultMatrixTests))]
    public async Task A_restore_ends_clean_whatever_happens_to_an_answer(string method, string kind)
    {
        var clock = new ShiftedClock();
        await using var w = await FaultMatrixTests.WorldAsync(clock);
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var before = w.Inventory();
        var result = await FaultMatrixTests.UnderFaultAsync(w, method, kind, () => w.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-back" }));
        if (kind == "delay") Assert.NotNull(result);

        await FaultMatrixTests.CleanUpAsync(w, clock);
        var restored = (await w.Client.VmPoolAsync()).Where(v => v.Name == "web-back").ToList();
        // Never two VMs for one restore; a VM exists only when the restore said so, and it runs the backed-up disks.
        Assert.Equal(result is null ? 0 : 1, restored.Count);
        var after = w.Inventory();
        Assert.Equal(before["templates"], after["templates"]);
        Assert.Equal(before["proxy_disks"], after["proxy_disks"]);
        Assert.Equal(0, after["busy_vms"]);
        var newImages = ((List<object?>)after["images"]!).Cast<string>().Except(((List<object?>)before["images"]!).Cast<string>()).ToList();
        if (result is null) Assert.Empty(newImages);
        else
        {
            Assert.Equal(result.Images.Count, newImages.Count);
            Assert.Equal(w.DiskSha256(web.Id, 1), w.DiskSha256(restored[0].Id, 1));
        }
    }
}
