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
        foreach (var vm in gold) Assert.Equal(2, w.Repository.ListRestorePoints(w.Backup.Sources.Of(vm)).Count);
        var kept = w.Repository.ListRestorePoints(w.Backup.Sources.Of(gold[0]));
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

    /// <summary>A policy's drill schedule: each VM it selects is drilled from its latest point when due, the outcome recorded; a failed drill is told.</summary>
    [Fact]
    public async Task A_policys_drills_run_when_due_record_their_recovery_time_and_a_failed_one_is_told()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var db = await w.VmAsync("db-01");
        await w.Backup.RunAsync(web.Id, new BackupOptions());
        await w.Backup.RunAsync(db.Id, new BackupOptions());
        // Backups at 02:00 (not due in this test), drills every 5 minutes; db-01's check fails.
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "gold", Schedule = "0 2 * * *", Selection = new VmSelection { VmIds = [web.Id, db.Id] },
            Drill = new DrillSchedule { Schedule = "*/5 * * * *", CheckCommand = $"test \"$PROXYBACKUP_DRILLED_VM_ID\" != {db.Id}" },
        });
        var before = w.Inventory();
        var clock = new ManualClock(T0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Time = clock, Since = T0, Notifier = notifier, GcGrace = TimeSpan.Zero, Restore = w.Restore });

        await runner.TickAsync(CancellationToken.None);                   // 01:02: no drill due before 01:05
        await runner.DrainAsync();
        Assert.Empty(w.Catalog.LastJobs("drill"));
        clock.Now = T0.AddMinutes(3);
        await runner.TickAsync(CancellationToken.None);
        await runner.DrainAsync();

        var drills = w.Catalog.LastJobs("drill");
        Assert.Equal("succeeded", drills[web.Id].State);
        Assert.True(drills[web.Id].Measured > TimeSpan.Zero);
        Assert.Equal("failed", drills[db.Id].State);
        var told = Assert.Single(notifier.Received);
        Assert.Equal((NotificationEvent.DrillFailed, db.Id, "gold"), (told.Event, told.VmId, told.Policy));
        Assert.StartsWith("the check command exited 1.", told.Detail, StringComparison.Ordinal);
        Assert.Equal(before["vms"], w.Inventory()["vms"]);
        Assert.Equal(before["templates"], w.Inventory()["templates"]);
        Assert.Empty(w.Catalog.Pending());

        // The slot is taken: the next tick in the same five minutes drills nothing again.
        await runner.TickAsync(CancellationToken.None);
        await runner.DrainAsync();
        Assert.Equal(4, w.Catalog.Recent(20).Count(j => j.Kind is "drill" or "backup"));
    }

    /// <summary>The policy's consistency mode reaches its scheduled backups and a backup an operator hands to the daemon for one of its VMs.</summary>
    [Fact]
    public async Task A_policys_suspend_mode_takes_one_moment_for_its_scheduled_and_its_operators_backups()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "db", Schedule = "*/5 * * * *", Selection = new VmSelection { VmIds = [web.Id] }, Consistency = new SnapshotConsistency { Mode = ConsistencyMode.Suspend },
        });
        var clock = new ManualClock(T0.AddMinutes(3));
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Limits = new QueueLimits(2, 1, 2), Time = clock, Since = T0, GcGrace = TimeSpan.Zero });
        Assert.Equal(1, await runner.TickAsync(CancellationToken.None));
        await DrainAll(runner);
        Assert.True(await runner.SubmitAsync(web.Id, full: false, CancellationToken.None));
        await runner.TickAsync(CancellationToken.None);
        await DrainAll(runner);

        var points = w.Repository.ListRestorePoints(w.Backup.Sources.Of(web.Id));
        Assert.Equal(2, points.Count);
        Assert.All(points, p => Assert.Equal("suspend", p.Tags["consistency"]));
        var moments = w.Sim.Cloud.SnapshotMoments(web.Id);
        Assert.Equal(4, moments.Count);
        Assert.Single(moments.Take(2).Select(m => m.DataAt).Distinct());
        Assert.Single(moments.Skip(2).Select(m => m.DataAt).Distinct());
        Assert.Equal("RUNNING", (await w.Client.VmInfoAsync(web.Id)).StateName);
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
        using (RepositoryLock.Acquire(w.Repository, exclusive: false, purpose: "retention elsewhere", scope: $"retention:{w.Backup.Sources.Of(web.Id)}"))
        {
            Assert.Equal(1, await runner.TickAsync(CancellationToken.None));
            await DrainAll(runner);
        }

        Assert.Single(w.Repository.ListRestorePoints(w.Backup.Sources.Of(web.Id)));   // backed up once, not retried
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
        // The runner's time follows the catalog's (the real clock) so that the summary finds the jobs of its day.
        var now = DateTimeOffset.UtcNow;
        var t0 = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 2, 0, TimeSpan.Zero);
        var clock = new ManualClock(t0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance, new PolicyRunnerOptions
        {
            ProxyVmId = w.ProxyId, Limits = new QueueLimits(1, 1, 2), Time = clock, Since = t0, Notifier = notifier,
            LongWait = TimeSpan.FromMinutes(3), SummarySchedule = CronSchedule.Parse($"30 {(t0.Hour + 3) % 24} * * *", TimeZoneInfo.Utc), Jobs = w.Catalog,
        });
        List<Notification> Told(NotificationEvent e) { lock (notifier.Sent) return [.. notifier.Received.Where(n => n.Event == e)]; }
        // The first VM's snapshot is held until the test lets it go: the other waits in the queue meanwhile (one job at a time).
        var hold = w.Sim.Cloud.HoldTransientStates(SimOperation.SnapshotCreate);

        clock.Now = t0.AddMinutes(58 + 5);   // hh+1:05, the run of hh+1:00, five minutes late
        Assert.Equal(1, await runner.TickAsync(CancellationToken.None));
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        var missing = Assert.Single(Told(NotificationEvent.VmMissing));
        Assert.Equal(("named", "Policy named names VM 999, VM 'gone-vm', which no longer exist"), (missing.Policy, missing.Summary));
        var (waiting, running) = runner.Status();
        var held = Assert.Single(running).Item;
        var queued = Assert.Single(waiting);
        Assert.Empty(Told(NotificationEvent.LongWait));   // seen waiting just now

        clock.Now = t0.AddMinutes(58 + 9);   // four minutes on, the window still open
        await runner.TickAsync(CancellationToken.None);
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        var wait = Assert.Single(Told(NotificationEvent.LongWait));
        Assert.Equal((queued.VmId, "named", $"VM {queued.VmId} ({queued.VmName}) has waited 4 min for its backup to start"), (wait.VmId, wait.Policy, wait.Summary));
        await runner.TickAsync(CancellationToken.None);
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        Assert.Single(Told(NotificationEvent.LongWait));   // told once

        clock.Now = t0.AddMinutes(58 + 11);   // the window closed while the other VM waited
        await runner.TickAsync(CancellationToken.None);
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        var skipped = Assert.Single(Told(NotificationEvent.WindowSkipped));
        Assert.Equal(queued.VmId, skipped.VmId);
        Assert.Contains("window of policy named closed", skipped.Summary, StringComparison.Ordinal);
        hold.Dispose();
        await DrainAll(runner);

        // The next run backs both up; the same missing VMs are not told again.
        clock.Now = t0.AddMinutes(58 + 60 + 1);
        await runner.TickAsync(CancellationToken.None);
        await DrainAll(runner);
        Assert.Single(Told(NotificationEvent.VmMissing));

        // Three and a half hours on, when the summary is due (the policy's missed runs are past their window and start nothing).
        clock.Now = t0.AddMinutes(-2 + 3 * 60 + 31);
        await runner.TickAsync(CancellationToken.None);
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        var summary = Assert.Single(Told(NotificationEvent.DailySummary));
        Assert.Equal("Daily summary: 2 backup(s) succeeded, 0 failed", summary.Summary);
        Assert.Contains("Backups in the last 24 hours: 2 succeeded, 0 failed, 0 running", summary.Detail, StringComparison.Ordinal);
        Assert.Equal(2, w.Repository.ListRestorePoints(w.Backup.Sources.Of(held.VmId)).Count);
        Assert.Single(w.Repository.ListRestorePoints(w.Backup.Sources.Of(queued.VmId)));
    }

    [RootFact]
    public async Task Backups_are_held_while_the_repository_disk_is_not_mounted_and_that_is_told_once()
    {
        await using var w = await EngineWorld.StartAsync();
        var mount = Path.Combine(w.Root, "repository-disk");
        Directory.CreateDirectory(mount);
        LoopDevice.Run("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", mount);
        var onDisk = BackupRepository.Create(Path.Combine(mount, "repo"), new RepositoryCreateOptions { MountPoint = mount });
        LoopDevice.Run("umount", "-l", mount);   // the disk went away after the daemon opened it
        w.Catalog.SavePolicy(new ProtectionPolicy { Name = "all", Schedule = "*/5 * * * *", Selection = new VmSelection { NamePattern = "*" } });
        var clock = new ManualClock(T0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, onDisk, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, Time = clock, Since = T0, Notifier = notifier });

        clock.Now = T0.AddMinutes(4);
        Assert.Equal(0, await runner.TickAsync(CancellationToken.None));
        Assert.True(runner.Queue.Waiting > 0);
        clock.Now = T0.AddMinutes(5);
        Assert.Equal(0, await runner.TickAsync(CancellationToken.None));
        await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(30));
        var told = Assert.Single(notifier.Received);
        Assert.Equal(NotificationEvent.RepositoryUnavailable, told.Event);
        Assert.Equal($"The repository disk is not mounted at {mount}: backups are held", told.Summary);
        Assert.Empty(w.Catalog.Recent(10));
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

    [Fact]
    public async Task A_proxy_backs_up_only_the_VMs_its_cluster_reaches_and_tells_once_of_those_no_proxy_reaches()
    {
        await using var w = await EngineWorld.StartAsync();
        // Fleet VMs 1 and 3 have their disks in cluster 0's reach, 2 and 4 in images-c1, which only cluster 1's host reaches.
        w.Sim.Cloud.SeedFleet(vms: 4, diskMb: 1, extraProxies: 0, clusters: 2);
        await w.Sim.Cloud.WaitIdleAsync(TimeSpan.FromSeconds(30));
        var proxy = await w.Client.VmInfoAsync(w.ProxyId);
        Assert.Equal(0, proxy.CurrentHistory!.ClusterId);
        // What the proxy must not try: OpenNebula refuses to attach an image of another cluster's datastore.
        var farImage = (await w.Client.ImagePoolAsync()).First(i => i.Name == "fleet-002-data");
        var refused = await Assert.ThrowsAsync<OneActionException>(() => w.Client.VmAttachAsync(w.ProxyId, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", farImage.Id), new("READONLY", "YES")])));
        Assert.Contains($"Image [{farImage.Id}] is not part of cluster [0]", refused.Message);
        w.Catalog.RenewLease(cluster: 0);
        w.Catalog.SavePolicy(new ProtectionPolicy { Name = "fleet", Schedule = "*/5 * * * *", Selection = new VmSelection { Label = "fleet" } });
        var clock = new ManualClock(T0);
        var notifier = new RecordingNotifier();
        var runner = new PolicyRunner(w.Catalog, w.Client, w.Backup, w.Repository, NullLogger.Instance,
            new PolicyRunnerOptions { ProxyVmId = w.ProxyId, ProxyCluster = 0, Limits = new QueueLimits(2, 0, 0), Time = clock, Since = T0, Notifier = notifier });
        var fleet = (await w.Client.VmPoolExtendedAsync()).Where(v => v.Name.StartsWith("fleet-", StringComparison.Ordinal)).OrderBy(v => v.Name).ToList();
        // One run at T0 + minutes, drained and its notifications sent: how many VMs were told unreachable so far.
        async Task<int> RunAtAsync(int minutes)
        {
            clock.Now = T0.AddMinutes(minutes);
            await runner.TickAsync(CancellationToken.None);
            await DrainAll(runner);
            await runner.FlushNotificationsAsync(TimeSpan.FromSeconds(10));
            return notifier.Received.Count(n => n.Event == NotificationEvent.VmUnreachable);
        }

        await RunAtAsync(3);
        Assert.Equal([fleet[0].Id, fleet[2].Id], w.Repository.ListRestorePoints().Select(p => int.Parse(p.Tags["vm_id"], System.Globalization.CultureInfo.InvariantCulture)).Order());
        // No job was even tried for the others (the attach would be refused: "Image [N] is not part of cluster [0]").
        Assert.DoesNotContain(w.Catalog.Recent(50), j => j.VmId == fleet[1].Id || j.VmId == fleet[3].Id);
        var told = notifier.Received.Where(n => n.Event == NotificationEvent.VmUnreachable).ToList();
        Assert.Equal([fleet[1].Id, fleet[3].Id], told.Select(n => n.VmId!.Value).Order());
        Assert.All(told, n => Assert.Contains("images-c1", n.Detail));

        // The next run finds them unreachable again: told once, not at every run.
        Assert.Equal(2, await RunAtAsync(8));
        Assert.Equal(4, w.Repository.ListRestorePoints().Count);

        // A proxy of cluster 1 appears (its lease, as another machine's daemon writes it): the next run leaves those VMs to it, and tells nothing more.
        using (var c = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={w.Catalog.Path}"))
        {
            c.Open();
            using var insert = c.CreateCommand();
            insert.CommandText = "INSERT INTO owner_leases (host, pid, start, renewed, boot, cluster) VALUES ('proxy-c1', 4242, 1, $t, 'boot-of-proxy-c1', 1);";
            insert.Parameters.AddWithValue("$t", DateTimeOffset.UtcNow.ToString("o", System.Globalization.CultureInfo.InvariantCulture));
            insert.ExecuteNonQuery();
        }
        Assert.Equal(2, await RunAtAsync(13));
        Assert.Equal(6, w.Repository.ListRestorePoints().Count);
        Assert.Contains(w.Catalog.ClaimableRuns(), r => r.VmId == fleet[1].Id);
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
