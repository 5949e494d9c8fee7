using System.Diagnostics;
using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Catalog.Tests;

/// <summary>
/// The catalog's behaviour, the same on SQLite and on PostgreSQL: each test runs on both engines
/// (<see cref="CatalogTheoryAttribute"/>).
/// </summary>
public sealed class CatalogTests
{
    private static readonly DateTimeOffset T0 = new(2026, 12, 1, 2, 0, 0, TimeSpan.Zero);
    private const string OtherHost = "proxy-b";

    /// <summary>The pid of a process that has ended: an owner that is gone.</summary>
    private static int DeadPid()
    {
        using var p = Process.Start("/bin/true")!;
        p.WaitForExit();
        return p.Id;
    }

    [CatalogTheory]
    public void The_clusters_served_are_those_of_the_leases_renewed_within_the_lease(string engine)
    {
        using var db = new TestCatalog(engine);
        var clock = new ManualClock(T0);
        var catalog = db.Open(clock);
        Assert.Empty(catalog.ServedClusters());
        catalog.RenewLease(cluster: 3);
        Assert.Equal([3], catalog.ServedClusters());
        // A lease without a cluster (a CLI process) serves none; a renewal moves the proxy's cluster.
        catalog.RenewLease();
        Assert.Empty(catalog.ServedClusters());
        catalog.RenewLease(cluster: 5);
        clock.Now = T0 + ProcessOwner.Lease - TimeSpan.FromSeconds(1);
        Assert.Equal([5], catalog.ServedClusters());
        clock.Now = T0 + ProcessOwner.Lease + TimeSpan.FromSeconds(1);
        Assert.Empty(catalog.ServedClusters());
    }

    [CatalogTheory]
    public void Journal_entries_keep_their_owner_until_removed(string engine)
    {
        using var db = new TestCatalog(engine);
        var catalog = db.Open(new ManualClock(T0));
        var first = catalog.Record("b-1", CloudObjectKind.DiskSnapshot, 7, 0, "pb-b-1-snap");
        var second = catalog.Record("b-2", CloudObjectKind.Image, 8, 1, "pb-b-2-img");
        catalog.SetObjectId(second, 42);

        var all = catalog.Pending();
        Assert.Equal([first, second], all.Select(e => e.Id));
        Assert.Equal((CloudObjectKind.Image, 8, 1, "pb-b-2-img", 42), (all[1].Kind, all[1].VmId, all[1].DiskId, all[1].Name, all[1].ObjectId));
        Assert.True(all[0].Owner!.IsCurrent);
        Assert.Equal(T0, all[0].Created);
        Assert.Equal([second], catalog.Pending("b-2").Select(e => e.Id));

        catalog.Remove(first);
        Assert.Equal([second], catalog.Pending().Select(e => e.Id));
    }

    [CatalogTheory]
    public void Jobs_are_recorded_with_their_outcome_log_and_latest_per_vm(string engine)
    {
        using var db = new TestCatalog(engine);
        var clock = new ManualClock(T0);
        var catalog = db.Open(clock);
        catalog.Started("b-1", "backup", 7);
        catalog.Log("b-1", "info", "reading disk 0");
        clock.Now = T0.AddMinutes(5);
        catalog.Finished("b-1", false, 100, 10, null, "the datastore is full");
        catalog.Started("b-2", "backup", 7);
        catalog.Finished("b-2", true, 5_000_000_000, 3_000_000_000, "20261201T020500Z-ab", null);
        catalog.Started("d-1", "drill", 7);
        catalog.Measured("d-1", TimeSpan.FromSeconds(93.5));
        clock.Now = T0.AddMinutes(10);
        catalog.Started("b-3", "backup", 9);

        var recent = catalog.Recent(10);
        Assert.Equal(4, recent.Count);
        var b2 = recent.Single(j => j.Id == "b-2");
        Assert.Equal(("succeeded", 5_000_000_000L, 3_000_000_000L, "20261201T020500Z-ab"), (b2.State, b2.BytesRead, b2.BytesStored, b2.RestorePoint));
        Assert.Equal(TimeSpan.FromSeconds(93.5), recent.Single(j => j.Id == "d-1").Measured);
        Assert.Equal(["b-3"], catalog.Since(T0.AddMinutes(10)).Select(j => j.Id));
        var latest = catalog.LastJobs("backup");
        Assert.Equal(("b-2", "b-3"), (latest[7].Id, latest[9].Id));
        Assert.Equal("b-2", catalog.LastJobs("backup", "succeeded")[7].Id);
        Assert.Equal(1, catalog.FailureCounts("backup")[7]);
        Assert.Equal([("info", "reading disk 0")], catalog.LogOf("b-1").Select(l => (l.Level, l.Message)));
    }

    [CatalogTheory]
    public void A_job_is_interrupted_once_its_process_is_gone_and_not_while_its_lease_is_renewed(string engine)
    {
        using var db = new TestCatalog(engine);
        var clock = new ManualClock(T0);
        var catalog = db.Open(clock);
        foreach (var id in new[] { "dead-here", "other-fresh", "clone-fresh", "mine" }) catalog.Started(id, "backup", 1);
        var dead = DeadPid();
        void Own(string job, string host, int pid, string? boot)
        {
            db.Sql("UPDATE jobs SET owner_host = @h, owner_pid = @p, owner_start = 77 WHERE id = @id;", ("@h", host), ("@p", pid), ("@id", job));
            db.Sql("INSERT INTO owner_leases (host, pid, start, renewed, boot) VALUES (@h, @p, 77, @t, @b);", ("@h", host), ("@p", pid), ("@t", T0.ToString("o")), ("@b", boot));
        }
        Own("dead-here", Environment.MachineName, dead, ProcessOwner.BootId);
        Own("other-fresh", OtherHost, 4242, "boot-of-proxy-b");
        // A proxy cloned from the same image: this host name, another machine (boot).
        Own("clone-fresh", Environment.MachineName, 4343, "boot-of-a-clone");

        clock.Now = T0.AddSeconds(30);
        Assert.Equal(1, catalog.MarkInterrupted());
        var states = catalog.Recent(10).ToDictionary(j => j.Id, j => j.State);
        Assert.Equal(("interrupted", "running", "running", "running"), (states["dead-here"], states["other-fresh"], states["clone-fresh"], states["mine"]));

        clock.Now = T0 + ProcessOwner.Lease + TimeSpan.FromSeconds(1);
        Assert.Equal(2, catalog.MarkInterrupted());
        var other = catalog.Recent(10).Single(j => j.Id == "other-fresh");
        Assert.Equal("interrupted", other.State);
        Assert.Contains($"pid 4242 on {OtherHost}", other.Error, StringComparison.Ordinal);
        Assert.Equal("running", catalog.Recent(10).Single(j => j.Id == "mine").State);
    }

    [CatalogTheory]
    public void A_process_renews_its_lease_with_its_boot(string engine)
    {
        using var db = new TestCatalog(engine);
        var catalog = db.Open(new ManualClock(T0));
        catalog.RenewLease();
        var me = ProcessOwner.Current;
        Assert.Equal(T0.ToString("o"), db.Scalar("SELECT renewed FROM owner_leases WHERE host = @h AND pid = @p;", ("@h", me.Host), ("@p", me.Pid)));
        Assert.Equal(ProcessOwner.BootId, db.Scalar("SELECT boot FROM owner_leases WHERE host = @h AND pid = @p;", ("@h", me.Host), ("@p", me.Pid)));
    }

    [CatalogTheory]
    public void Policies_are_saved_replaced_and_removed_with_their_runs(string engine)
    {
        using var db = new TestCatalog(engine);
        var catalog = db.Open(new ManualClock(T0));
        catalog.SavePolicy(new ProtectionPolicy { Name = "gold", Schedule = "0 2 * * *", Selection = new VmSelection { VmIds = [1] } });
        catalog.SavePolicy(new ProtectionPolicy { Name = "gold", Schedule = "0 3 * * *", Selection = new VmSelection { VmIds = [1, 2] } });
        catalog.SavePolicy(new ProtectionPolicy { Name = "silver", Schedule = "@daily", Selection = new VmSelection { VmIds = [3] } });
        Assert.Equal(["gold", "silver"], catalog.Policies().Select(p => p.Name));
        Assert.Equal("0 3 * * *", catalog.Policies()[0].Schedule);
        Assert.True(catalog.PlanRun("gold", T0, null, [(1, "web-01")]));
        catalog.SetLastSlot("gold#drill", T0.AddDays(-1));
        Assert.Equal(T0, catalog.LastSlots()["gold"]);

        Assert.True(catalog.RemovePolicy("gold"));
        Assert.False(catalog.RemovePolicy("gold"));
        Assert.Equal(["silver"], catalog.Policies().Select(p => p.Name));
        Assert.False(catalog.LastSlots().ContainsKey("gold"));
        Assert.Empty(catalog.ClaimableRuns());
    }

    [CatalogTheory]
    public void A_run_is_planned_by_one_proxy_and_each_of_its_vms_claimed_by_one(string engine)
    {
        using var db = new TestCatalog(engine);
        var (a, b) = (db.Open(new ManualClock(T0)), db.Open(new ManualClock(T0)));
        var vms = Enumerable.Range(100, 60).Select(id => (id, $"vm-{id}")).ToList();

        // Both proxies find the slot due at once: one plans it.
        var planned = new[] { a, b }.AsParallel().Select(c => c.PlanRun("gold", T0, T0.AddHours(4), vms)).ToList();
        Assert.Equal(1, planned.Count(p => p));
        Assert.False(a.PlanRun("gold", T0.AddDays(-1), null, vms));

        var runs = a.ClaimableRuns();
        Assert.Equal(vms.Select(v => v.id), runs.Select(r => r.VmId).Order());
        Assert.All(runs, r => Assert.Equal((T0, T0.AddHours(4), (ProcessOwner?)null), (r.Slot, r.StartBy, r.Owner)));

        // Four claimers on each catalog object race for every VM: each VM goes to exactly one.
        var wins = new System.Collections.Concurrent.ConcurrentBag<int>();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var catalog = i % 2 == 0 ? a : b;
            foreach (var run in (i % 3 == 0 ? runs.Reverse() : runs))
                if (catalog.ClaimRun(run)) wins.Add(run.VmId);
        });
        Assert.Equal(vms.Select(v => v.id), wins.Order());
        // Held by a live process (this one): nobody else may take them.
        Assert.Empty(b.ClaimableRuns());
    }

    [CatalogTheory]
    public void A_vm_held_by_a_process_that_is_gone_is_taken_over_and_one_given_back_is_queued_again(string engine)
    {
        using var db = new TestCatalog(engine);
        var clock = new ManualClock(T0);
        var catalog = db.Open(clock);
        Assert.True(catalog.PlanRun("gold", T0, null, [(1, "web-01"), (2, "db-01"), (3, "app-01")]));
        var dead = DeadPid();
        db.Sql("UPDATE run_queue SET state = 'running', owner_host = @h, owner_pid = @p, owner_start = 5 WHERE vm_id = 1;", ("@h", Environment.MachineName), ("@p", dead));
        db.Sql("UPDATE run_queue SET state = 'running', owner_host = @h, owner_pid = 4242, owner_start = 5 WHERE vm_id = 2;", ("@h", OtherHost));
        db.Sql("INSERT INTO owner_leases (host, pid, start, renewed, boot) VALUES (@h, 4242, 5, @t, 'boot-of-proxy-b');", ("@h", OtherHost), ("@t", T0.ToString("o")));

        var claimable = catalog.ClaimableRuns().ToDictionary(r => r.VmId);
        Assert.Equal([1, 3], claimable.Keys.Order());
        Assert.Equal(dead, claimable[1].Owner!.Pid);
        Assert.Null(claimable[3].Owner);
        Assert.False(catalog.ClaimRun(claimable[1] with { Owner = null }));
        Assert.True(catalog.ClaimRun(claimable[1]));
        Assert.False(catalog.ClaimRun(claimable[1]));

        // Proxy B stops renewing its lease: its VM is taken over once the lease ran out.
        clock.Now = T0 + ProcessOwner.Lease + TimeSpan.FromSeconds(1);
        Assert.Equal([2, 3], catalog.ClaimableRuns().Select(r => r.VmId));
        var fromB = catalog.ClaimableRuns()[0];
        Assert.Equal(OtherHost, fromB.Owner!.Host);
        Assert.True(catalog.ClaimRun(fromB));

        // A shutdown gives a VM back; a VM done is done.
        catalog.EndRun(claimable[1], null);
        catalog.EndRun(fromB, "succeeded");
        Assert.True(catalog.ClaimRun(claimable[3]));
        Assert.Equal([1], catalog.ClaimableRuns().Select(r => r.VmId));
        Assert.Null(catalog.ClaimableRuns()[0].Owner);
    }

    [CatalogTheory]
    public void A_new_slot_supersedes_what_the_last_one_left_queued_but_not_what_runs(string engine)
    {
        using var db = new TestCatalog(engine);
        var catalog = db.Open(new ManualClock(T0));
        Assert.True(catalog.PlanRun("gold", T0, null, [(1, "web-01"), (2, "db-01")]));
        var running = catalog.ClaimableRuns().Single(r => r.VmId == 2);
        Assert.True(catalog.ClaimRun(running));

        Assert.True(catalog.PlanRun("gold", T0.AddDays(1), null, [(1, "web-01"), (2, "db-01")]));
        Assert.All(catalog.ClaimableRuns(), r => Assert.Equal(T0.AddDays(1), r.Slot));
        Assert.Equal(3L, Convert.ToInt64(db.Scalar("SELECT COUNT(*) FROM run_queue;")));
        // The old slot's VM still running ends as it would.
        catalog.EndRun(running, "succeeded");
        Assert.Equal("succeeded", db.Scalar("SELECT outcome FROM run_queue WHERE slot = @s;", ("@s", T0.ToUniversalTime().ToString("o"))));
    }

    [CatalogTheory]
    public void A_vm_guard_keeps_a_second_job_off_until_released_or_its_holder_is_gone(string engine)
    {
        using var db = new TestCatalog(engine);
        var clock = new ManualClock(T0);
        var catalog = db.Open(clock);
        var held = catalog.Acquire(7, "b-1", "backup");
        var busy = Assert.Throws<VmBusyException>(() => db.Open(clock).Acquire(7, "r-1", "restore"));
        Assert.Contains("backup job b-1", busy.Message, StringComparison.Ordinal);
        held.Dispose();
        catalog.Acquire(7, "r-1", "restore").Dispose();

        // Left by a process that died on this machine: stale.
        db.Sql("INSERT INTO vm_guards (vm_id, job_id, what, host, pid, since, start, boot) VALUES (8, 'old', 'backup', @h, @p, '2026-12-01 01:00:00Z', 1, @b);",
            ("@h", Environment.MachineName), ("@p", DeadPid()), ("@b", ProcessOwner.BootId));
        catalog.Acquire(8, "b-2", "backup").Dispose();

        // Held by a cloned proxy (same host name, another boot) that renews its lease: busy until the lease runs out.
        db.Sql("INSERT INTO vm_guards (vm_id, job_id, what, host, pid, since, start, boot) VALUES (9, 'clone', 'backup', @h, 4343, '2026-12-01 01:00:00Z', 9, 'boot-of-a-clone');",
            ("@h", Environment.MachineName));
        db.Sql("INSERT INTO owner_leases (host, pid, start, renewed, boot) VALUES (@h, 4343, 9, @t, 'boot-of-a-clone');", ("@h", Environment.MachineName), ("@t", T0.ToString("o")));
        Assert.Throws<VmBusyException>(() => catalog.Acquire(9, "b-3", "backup"));
        clock.Now = T0 + ProcessOwner.Lease + TimeSpan.FromSeconds(1);
        catalog.Acquire(9, "b-3", "backup").Dispose();
    }

    [CatalogTheory]
    public void The_restore_point_index_follows_a_source_and_a_rebuild(string engine)
    {
        using var db = new TestCatalog(engine);
        var catalog = db.Open();
        ListedRestorePoint Point(string source, string id, int hour) => new(source, id, T0.AddHours(hour), 7, "web-01", "full", 2, 6_000_000_000);
        catalog.Sync("vm-7", [Point("vm-7", "p1", 1), Point("vm-7", "p2", 2)]);
        catalog.Sync("vm-8", [Point("vm-8", "q1", 0)]);
        Assert.Equal(["q1", "p1", "p2"], catalog.ListedPoints().Select(p => p.Id));
        catalog.Sync("vm-7", [Point("vm-7", "p2", 2)]);
        Assert.Equal(["p2"], catalog.ListedPoints("vm-7").Select(p => p.Id));
        Assert.Equal(6_000_000_000, catalog.ListedPoints("vm-7")[0].Bytes);
        catalog.ReplaceAll([Point("vm-9", "r1", 3)]);
        Assert.Equal(["r1"], catalog.ListedPoints().Select(p => p.Id));
    }

    [CatalogTheory]
    public void Proxies_that_start_together_migrate_the_schema_once(string engine)
    {
        using var db = new TestCatalog(engine);
        var opened = Enumerable.Range(0, 4).AsParallel().WithDegreeOfParallelism(4).Select(_ => db.Open()).ToList();
        var versions = Convert.ToInt64(db.Scalar("SELECT COUNT(*) FROM schema_version;"));
        Assert.Equal(versions, Convert.ToInt64(db.Scalar("SELECT COUNT(DISTINCT version) FROM schema_version;")));
        Assert.Equal(versions, Convert.ToInt64(db.Scalar("SELECT MAX(version) FROM schema_version;")));
        Assert.All(opened, c => Assert.Empty(c.Pending()));
    }
}
