using Microsoft.Extensions.Logging.Abstractions;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;
using ProxyBackup.Simulator;
using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>The daemon's core on a simulated cloud with a clock the test turns.</summary>
public class PolicyRunnerTests
{
    private sealed class RecordingNotifier : INotifier
    {
        public List<string> Sent { get; } = [];
        public List<Notification> Received { get; } = [];
        public Task NotifyAsync(Notification n, CancellationToken ct)
        {
            lock (Sent)
            {
                Sent.Add($"{n.EventName}:{n.Policy}:{n.VmId}:{n.Detail}");
                Received.Add(n);
            }
            return Task.CompletedTask;
        }
    }

    private static readonly DateTimeOffset T0 = new(2026, 11, 21, 1, 2, 0, TimeSpan.Zero);

    [Fact]
    public async Task Policies_run_when_due_with_limits_retries_retention_and_one_run_for_missed_slots()
    {
        await using var w = await EngineWorld.StartAsync();
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "gold", Schedule = "*/5 * * * *", Selection = new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" },
            Retention = new RetentionPolicy { KeepLast = 2 }, FullEveryRuns = 3, Retries = 1,
        });
        var clock = new ManualClock(T0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Limits = new QueueLimits(2, 1, 2), Time = clock, Since = T0, Notifier = notifier, GcGrace = TimeSpan.Zero });
        var gold = (await w.Client.VmPoolExtendedAsync()).Where(v => v.UserTemplate.Text("BACKUP_POLICY") == "gold").Select(v => v.Id).Order().ToList();
        Assert.Equal(2, gold.Count);

        Assert.Equal(0, await runner.TickAsync(CancellationToken.None)); // 01:02, nothing due before 01:05
        clock.Now = T0.AddMinutes(3);
        var started = await runner.TickAsync(CancellationToken.None);
        Assert.InRange(started, 1, 2);
        await DrainAll(runner);
        Assert.Equal(gold, w.Repository.ListRestorePoints().Select(p => int.Parse(p.Tags["vm_id"], System.Globalization.CultureInfo.InvariantCulture)).Distinct().Order());

        // A failing snapshot is retried within the run; the appliance then misses an hour: one run, not twelve.
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,nth=1,action=error,code=2048,message=injected")]);
        clock.Now = T0.AddMinutes(63);
        await runner.TickAsync(CancellationToken.None);
        await DrainAll(runner);
        Assert.Equal(4, w.Repository.ListRestorePoints().Count);
        Assert.Empty(notifier.Sent);
        Assert.Equal(T0.AddMinutes(63).AddMinutes(-(T0.AddMinutes(63).Minute % 5)), w.Catalog.LastSlots()["gold"]);

        // A third run: retention keeps the last two per VM, and garbage collection follows the drained run.
        clock.Now = T0.AddMinutes(68);
        await runner.TickAsync(CancellationToken.None);
        await DrainAll(runner);
        foreach (var vm in gold) Assert.Equal(2, w.Repository.ListRestorePoints(BackupJob.SourceOf(vm)).Count);
        var kept = w.Repository.ListRestorePoints(BackupJob.SourceOf(gold[0]));
        Assert.All(kept, p => Assert.Equal("incremental", p.Tags["kind"])); // runs 2 and 3; the first full was retired
        Assert.True(RunPlanner.NeedsFull(w.Catalog.Policies()[0], kept, clock.Now)); // so the next one is full
        Assert.True((await w.Repository.VerifyAsync(readData: true)).Ok);

        // A VM that keeps failing is reported once its retries are spent.
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksaveas,times=10,action=error,code=8192,message=broken datastore")]);
        clock.Now = T0.AddMinutes(73);
        await runner.TickAsync(CancellationToken.None);
        await DrainAll(runner);
        Assert.Equal(2, notifier.Sent.Count);
        Assert.All(notifier.Sent, s => Assert.Contains("broken datastore", s, StringComparison.Ordinal));
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
    }

    [Fact]
    public async Task A_retention_that_fails_after_a_good_backup_is_reported_as_such_and_the_backup_is_not_repeated()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "gold", Schedule = "*/5 * * * *", Selection = new VmSelection { VmIds = [web.Id] },
            Retention = new RetentionPolicy { KeepLast = 1 }, Retries = 2,
        });
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Time = new ManualClock(T0.AddMinutes(3)), Since = T0, Notifier = notifier });
        // Another retention of the same source holds its lock for the whole run, so this one cannot get it.
        w.Repository.ExclusiveLockWait = TimeSpan.Zero;
        using (RepositoryLock.Acquire(w.Repository, exclusive: false, purpose: "retention elsewhere", scope: $"retention:{BackupJob.SourceOf(web.Id)}"))
        {
            Assert.Equal(1, await runner.TickAsync(CancellationToken.None));
            await DrainAll(runner);
        }

        Assert.Single(w.Repository.ListRestorePoints(BackupJob.SourceOf(web.Id)));   // backed up once, not retried
        var sent = Assert.Single(notifier.Sent);
        Assert.StartsWith($"retention_failed:gold:{web.Id}:", sent, StringComparison.Ordinal);
        Assert.Contains("locked", sent, StringComparison.Ordinal);
        Assert.Single(w.Catalog.Recent(10), j => j.State == "succeeded");
    }

    [Fact]
    public async Task Operators_hear_of_a_vm_that_is_gone_a_long_wait_a_window_that_closed_and_get_a_daily_summary()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var db = await w.VmAsync("db-01");
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "named", Schedule = "0 * * * *", Window = TimeSpan.FromMinutes(10),
            Selection = new VmSelection { VmIds = [web.Id, db.Id, 999], VmNames = ["gone-vm"] },
        });
        var clock = new ManualClock(T0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance, new PolicyRunnerOptions
        {
            ProxyVmId = w.ProxyId, Limits = new QueueLimits(1, 1, 2), Time = clock, Since = T0, Notifier = notifier,
            LongWait = TimeSpan.FromMinutes(3), SummarySchedule = CronSchedule.Parse("0 7 * * *", TimeZoneInfo.Utc), Jobs = w.Catalog,
        });
        // The first VM's snapshot is held for 15 s: the other waits in the queue meanwhile (one job at a time).
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,nth=1,action=delay,latency=15000")]);

        clock.Now = T0.AddMinutes(63);   // 02:05: the 02:00 run, five minutes late
        Assert.Equal(1, await runner.TickAsync(CancellationToken.None));
        var missing = Assert.Single(notifier.Received, n => n.Event == NotificationEvent.VmMissing);
        Assert.Equal(("named", "Policy named names VM 999, VM 'gone-vm', which no longer exist"), (missing.Policy, missing.Summary));
        var (waiting, running) = runner.Status();
        var held = Assert.Single(running).Item;
        var queued = Assert.Single(waiting);
        var wait = Assert.Single(notifier.Received, n => n.Event == NotificationEvent.LongWait);
        Assert.Equal((queued.VmId, "named"), (wait.VmId, wait.Policy));
        Assert.StartsWith($"VM {queued.VmId} ({queued.VmName}) has waited 5 min", wait.Summary, StringComparison.Ordinal);
        await runner.TickAsync(CancellationToken.None);
        Assert.Single(notifier.Received, n => n.Event == NotificationEvent.LongWait);   // told once

        clock.Now = T0.AddMinutes(69);   // 02:11: the window closed while the other VM waited
        await runner.TickAsync(CancellationToken.None);
        var skipped = Assert.Single(notifier.Received, n => n.Event == NotificationEvent.WindowSkipped);
        Assert.Equal(queued.VmId, skipped.VmId);
        Assert.Contains("window of policy named closed", skipped.Summary, StringComparison.Ordinal);
        await DrainAll(runner);

        clock.Now = new DateTimeOffset(T0.Date.AddHours(7).AddMinutes(1), TimeSpan.Zero);
        await runner.TickAsync(CancellationToken.None);
        var summary = Assert.Single(notifier.Received, n => n.Event == NotificationEvent.DailySummary);
        Assert.Equal("Daily summary: 1 backup(s) succeeded, 0 failed", summary.Summary);
        Assert.Contains("Backups in the last 24 hours: 1 succeeded, 0 failed, 0 running.", summary.Detail, StringComparison.Ordinal);
        Assert.Single(w.Repository.ListRestorePoints(BackupJob.SourceOf(held.VmId)));
        Assert.Empty(w.Repository.ListRestorePoints(BackupJob.SourceOf(queued.VmId)));
    }

    [Fact]
    public async Task The_scheduled_verify_runs_when_due_records_its_state_and_notifies_damage()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var notifier = new RecordingNotifier();
        var clock = new ManualClock(T0);
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Time = clock, Since = T0, Notifier = notifier, VerifySchedule = CronSchedule.Parse("30 4 * * *", TimeZoneInfo.Utc), VerifyParts = 1 });

        await runner.TickAsync(CancellationToken.None);   // not due yet: the first run is at 04:30
        await runner.DrainAsync();
        Assert.Null(w.Repository.LastVerification(point));

        clock.Now = new DateTimeOffset(T0.Date.AddHours(4).AddMinutes(31), TimeSpan.Zero);
        await runner.TickAsync(CancellationToken.None);
        await runner.DrainAsync();
        var state = w.Repository.LastVerification(point);
        Assert.Equal((true, "all"), (state!.Ok, state.Data));
        Assert.Empty(notifier.Sent);

        // Damage one of its chunks: the next day's run finds it and says so like a failed backup.
        var chunk = w.Repository.LoadManifest(point, "1").Chunks.First(c => !c.IsZero);
        var path = Path.Combine(w.Repository.Root, "chunks", chunk.ToString()[..2], chunk.ToString());
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 1;
        File.WriteAllBytes(path, bytes);
        clock.Now += TimeSpan.FromDays(1);
        await runner.TickAsync(CancellationToken.None);
        await runner.DrainAsync();
        Assert.False(w.Repository.LastVerification(point)!.Ok);
        Assert.StartsWith("verify_failed:::1 restore point(s) damaged: ", Assert.Single(notifier.Sent), StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_job_that_must_wait_for_memory_waits_before_it_takes_a_snapshot()
    {
        await using var w = await EngineWorld.StartAsync();
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "gold", Schedule = "*/5 * * * *", Selection = new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" },
        });
        w.Repository.Memory.Budget = 1; // a job alone always runs; a second one waits for it
        var clock = new ManualClock(T0.AddMinutes(3));
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Limits = new QueueLimits(2, 0, 0), Time = clock, Since = T0, GcGrace = TimeSpan.Zero });

        Assert.Equal(2, await runner.TickAsync(CancellationToken.None));
        var mostVmsWithSnapshots = 0;
        var sawWaiting = false;
        while (runner.Queue.Running.Count > 0)
        {
            mostVmsWithSnapshots = Math.Max(mostVmsWithSnapshots, Convert.ToInt32(w.Inventory()["vms_with_snapshots"], System.Globalization.CultureInfo.InvariantCulture));
            sawWaiting |= runner.Status().Running.Any(r => r.Progress?.What.Contains("waiting for memory", StringComparison.Ordinal) == true);
            await Task.Delay(1);
        }
        await runner.DrainAsync();

        Assert.True(sawWaiting, "the second job never reported that it waits for memory");
        Assert.Equal(1, mostVmsWithSnapshots); // both jobs ran, one after the other: never two VMs with snapshots at once
        Assert.Equal(2, w.Repository.ListRestorePoints().Select(p => p.Source).Distinct().Count());
        Assert.Equal(0, w.Repository.Memory.Reserved);
    }

    private static async Task DrainAll(PolicyRunner runner)
    {
        for (var i = 0; i < 200 && (runner.Queue.Waiting > 0 || runner.Queue.Running.Count > 0); i++)
        {
            await runner.DrainAsync();
            await runner.TickAsync(CancellationToken.None);
        }
        await runner.DrainAsync();
        await runner.TickAsync(CancellationToken.None);
    }
}
