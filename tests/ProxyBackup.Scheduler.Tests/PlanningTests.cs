using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Contracts;

namespace ProxyBackup.Scheduler.Tests;

public class PlanningTests
{
    private static DateTimeOffset U(int d, int h, int m = 0) => new(2026, 11, d, h, m, 0, TimeSpan.Zero);

    private static ProtectionPolicy Nightly(string name = "nightly", int priority = 0, TimeSpan? window = null) => new()
    {
        Name = name, Schedule = "0 2 * * *", Selection = new VmSelection { Label = "prod" }, Priority = priority, Window = window,
    };

    [Fact]
    public void Missed_slots_run_once_not_once_per_slot()
    {
        var last = new Dictionary<string, DateTimeOffset> { ["nightly"] = U(10, 2) };
        var (due, _) = RunPlanner.Plan([Nightly()], last, U(1, 0), U(14, 9)); // the appliance was down four nights
        var run = Assert.Single(due);
        Assert.Equal(U(14, 2), run.Slot);
    }

    [Fact]
    public void Nothing_is_due_before_the_next_slot_and_a_new_policy_waits_for_its_first()
    {
        var (due, _) = RunPlanner.Plan([Nightly()], new Dictionary<string, DateTimeOffset> { ["nightly"] = U(14, 2) }, U(1, 0), U(14, 23, 59));
        Assert.Empty(due);
        var (fresh, _) = RunPlanner.Plan([Nightly()], new Dictionary<string, DateTimeOffset>(), since: U(14, 12), now: U(14, 23));
        Assert.Empty(fresh);
        var (first, _) = RunPlanner.Plan([Nightly()], new Dictionary<string, DateTimeOffset>(), since: U(14, 12), now: U(15, 2, 1));
        Assert.Equal(U(15, 2), Assert.Single(first).Slot);
    }

    [Fact]
    public void A_closed_window_skips_the_slot_and_priority_orders_the_rest()
    {
        var policies = new[] { Nightly("late", window: TimeSpan.FromHours(2)), Nightly("low", priority: 1), Nightly("high", priority: 9) };
        var last = policies.ToDictionary(p => p.Name, _ => U(13, 2));
        var (due, skipped) = RunPlanner.Plan(policies, last, U(1, 0), U(14, 5));
        Assert.Equal(["high", "low"], due.Select(d => d.Policy.Name));
        Assert.Equal("late", Assert.Single(skipped).Policy.Name);
        var (inWindow, _) = RunPlanner.Plan(policies, last, U(1, 0), U(14, 3));
        Assert.Equal(U(14, 4), inWindow.Single(d => d.Policy.Name == "late").StartNoLaterThan);
        Assert.Empty(RunPlanner.Plan([Nightly() with { Enabled = false }], last, U(1, 0), U(14, 5)).Due);
    }

    private static RestorePoint Point(int day, string kind) =>
        new() { Source = "vm-1", Id = $"p{day}", Time = U(day, 2), Tags = new() { ["kind"] = kind } };

    [Fact]
    public void Full_every_n_runs_or_days()
    {
        var policy = Nightly() with { FullEveryRuns = 3 };
        Assert.True(RunPlanner.NeedsFull(policy, [], U(14, 2)));
        Assert.False(RunPlanner.NeedsFull(policy, [Point(1, "full")], U(2, 2)));
        Assert.False(RunPlanner.NeedsFull(policy, [Point(1, "full"), Point(2, "incremental")], U(3, 2)));
        Assert.True(RunPlanner.NeedsFull(policy, [Point(1, "full"), Point(2, "incremental"), Point(3, "incremental")], U(4, 2)));
        var byAge = Nightly() with { FullEveryDays = 7 };
        Assert.False(RunPlanner.NeedsFull(byAge, [Point(1, "full"), Point(6, "incremental")], U(7, 2)));
        Assert.True(RunPlanner.NeedsFull(byAge, [Point(1, "full"), Point(6, "incremental")], U(8, 2)));
        Assert.False(RunPlanner.NeedsFull(Nightly(), [Point(1, "full"), Point(9, "incremental")], U(30, 2)));
    }

    [Fact]
    public void Policies_are_validated_as_a_whole()
    {
        var bad = new ProtectionPolicy { Name = "", Schedule = "61 * * * *", TimeZone = "Mars/Olympus", Window = TimeSpan.Zero, Retries = 99, Retention = new RetentionPolicy { KeepLast = -1 } };
        var problems = bad.Problems();
        Assert.Contains(problems, p => p.StartsWith("name:", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("outside the minute field", StringComparison.Ordinal) || p.Contains("time zone", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("window:", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("selection:", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("retries:", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("retention:", StringComparison.Ordinal));
        Assert.Throws<PolicyException>(() => bad.Validate());
        Nightly().Validate();
        Assert.Empty((Nightly() with { TimeZone = "Europe/Berlin" }).Problems());
    }

    private static VirtualMachine Vm(int id, string name, string labels = "", string? policy = null)
    {
        var user = new System.Xml.Linq.XElement("USER_TEMPLATE", new System.Xml.Linq.XElement("LABELS", labels));
        if (policy is not null) user.Add(new System.Xml.Linq.XElement("BACKUP_POLICY", policy));
        return VirtualMachine.Parse(new System.Xml.Linq.XElement("VM", new System.Xml.Linq.XElement("ID", id), new System.Xml.Linq.XElement("NAME", name),
            new System.Xml.Linq.XElement("STATE", 3), new System.Xml.Linq.XElement("LCM_STATE", 3), new System.Xml.Linq.XElement("TEMPLATE"), user));
    }

    [Fact]
    public void Vms_typed_as_ids_or_names_become_a_selection_of_both()
    {
        var selection = VmSelection.ByIdOrName(["7", " db-01 ", "12", "db-01", "", "1e3", "-4"]);
        Assert.Equal([7, 12], selection.VmIds);
        Assert.Equal(["db-01", "1e3", "-4"], selection.VmNames);
        Assert.True(VmSelection.ByIdOrName([]).IsEmpty);
        Assert.False(VmSelection.ByIdOrName(["web"]).IsEmpty);
    }

    [Fact]
    public void Selection_by_id_name_label_or_attribute()
    {
        Assert.True(new VmSelection { VmIds = [7] }.Matches(Vm(7, "x")));
        Assert.True(new VmSelection { VmNames = ["db-01"] }.Matches(Vm(3, "db-01")));
        Assert.False(new VmSelection { VmNames = ["db-01"] }.Matches(Vm(3, "db-011")));
        Assert.False(new VmSelection { VmNames = ["db-01"] }.Matches(Vm(3, "DB-01")));
        Assert.True(new VmSelection { NamePattern = "web-*" }.Matches(Vm(1, "web-01")));
        Assert.False(new VmSelection { NamePattern = "web-?" }.Matches(Vm(1, "web-01")));
        Assert.True(new VmSelection { Label = "PROD" }.Matches(Vm(1, "a", "dev,prod")));
        Assert.False(new VmSelection { Label = "prod" }.Matches(Vm(1, "a", "production")));
        Assert.True(new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" }.Matches(Vm(1, "a", policy: "gold")));
        Assert.False(new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" }.Matches(Vm(1, "a", policy: "silver")));
        Assert.True(new VmSelection { AttributeName = "BACKUP_POLICY" }.Matches(Vm(1, "a", policy: "silver")));
        Assert.False(new VmSelection().Matches(Vm(1, "a")));
    }
}

public class JobQueueTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 21, 2, 0, 0, TimeSpan.Zero);

    private static QueuedBackup Item(int vm, int host, int[] ds, int priority = 0, DateTimeOffset? deadline = null) =>
        new(vm, $"vm{vm}", host, ds, new DueRun(new ProtectionPolicy { Name = $"p{priority}", Schedule = "@daily", Priority = priority }, Now, deadline));

    [Fact]
    public void Limits_overall_per_host_and_per_datastore()
    {
        var q = new JobQueue(new QueueLimits(MaxConcurrent: 3, MaxPerHost: 1, MaxPerDatastore: 2));
        Assert.True(q.Enqueue(Item(1, host: 0, ds: [1])));
        Assert.True(q.Enqueue(Item(2, host: 0, ds: [1])));   // same host as 1
        Assert.True(q.Enqueue(Item(3, host: 1, ds: [1])));
        Assert.True(q.Enqueue(Item(4, host: 2, ds: [1])));   // third on datastore 1
        Assert.True(q.Enqueue(Item(5, host: 3, ds: [2])));
        Assert.False(q.Enqueue(Item(1, host: 0, ds: [1])));  // already queued
        var started = new List<int>();
        while (q.TryStart(Now).Next is { } next) started.Add(next.VmId);
        Assert.Equal([1, 3, 5], started);
        q.Finished(q.Running.Single(r => r.VmId == 1));
        Assert.Equal(2, q.TryStart(Now).Next!.VmId); // host 0 free again; datastore 1 has one slot
        Assert.Null(q.TryStart(Now).Next);             // 4 waits for datastore 1, and the overall limit is reached
    }

    [Fact]
    public void A_retry_goes_back_to_the_queue_in_one_step_and_its_vm_is_never_unlisted()
    {
        var q = new JobQueue(new QueueLimits(MaxConcurrent: 1, MaxPerHost: 0, MaxPerDatastore: 0));
        q.Enqueue(Item(1, 0, [1]));
        q.Enqueue(Item(2, 0, [1]));
        var first = q.TryStart(Now).Next!;
        Assert.Equal("waiting 2, running 1", Ids(q.Snapshot()));
        var retry = q.Retry(first);
        Assert.Equal(2, retry.Attempt);
        Assert.Equal("waiting 2 1, running ", Ids(q.Snapshot()));  // behind what already waited
        Assert.False(q.Enqueue(Item(1, 0, [1])));        // the retry holds the VM's place
        Assert.Equal(2, q.TryStart(Now).Next!.VmId);
        Assert.Equal("waiting 1, running 2", Ids(q.Snapshot()));
    }

    [Fact]
    public void A_job_whose_disks_are_read_no_longer_counts_against_the_limits_but_keeps_its_vm_listed()
    {
        var q = new JobQueue(new QueueLimits(MaxConcurrent: 1, MaxPerHost: 1, MaxPerDatastore: 0));
        q.Enqueue(Item(1, host: 0, ds: [1]));
        q.Enqueue(Item(2, host: 0, ds: [1]));
        var first = q.TryStart(Now).Next!;
        Assert.Null(q.TryStart(Now).Next);
        q.DisksRead(first);
        Assert.Equal(2, q.TryStart(Now).Next!.VmId);       // overall and host limit free again
        Assert.Equal("waiting , running 1 2", Ids(q.Snapshot()));
        Assert.False(q.Enqueue(Item(1, 0, [1])));          // its job still runs (commit, retention)
        q.Finished(first);
        q.DisksRead(first);                                // a late call for a finished item changes nothing:
        q.Finished(q.Running.Single(r => r.VmId == 2));
        Assert.True(q.Enqueue(first));                     // queued again (the same item), it counts when it runs
        Assert.True(q.Enqueue(Item(3, host: 1, ds: [1])));
        Assert.Equal(1, q.TryStart(Now).Next!.VmId);
        Assert.Null(q.TryStart(Now).Next);
    }

    private static string Ids((IReadOnlyList<QueuedBackup> Waiting, IReadOnlyList<QueuedBackup> Running) s) =>
        $"waiting {string.Join(' ', s.Waiting.Select(i => i.VmId))}, running {string.Join(' ', s.Running.Select(i => i.VmId))}";

    [Fact]
    public void Priority_first_then_arrival_and_expired_windows_drop()
    {
        var q = new JobQueue(new QueueLimits(MaxConcurrent: 10, MaxPerHost: 0, MaxPerDatastore: 0));
        q.Enqueue(Item(1, 0, [1], priority: 1));
        q.Enqueue(Item(2, 0, [1], priority: 5));
        q.Enqueue(Item(3, 0, [1], priority: 5));
        q.Enqueue(Item(4, 0, [1], priority: 9, deadline: Now.AddMinutes(-1)));
        var (first, expired) = q.TryStart(Now);
        Assert.Equal(2, first!.VmId);
        Assert.Equal(4, Assert.Single(expired).VmId);
        Assert.Equal(3, q.TryStart(Now).Next!.VmId);
        Assert.Equal(1, q.TryStart(Now).Next!.VmId);
        Assert.Equal(0, q.Waiting);
    }
}
