using Microsoft.Extensions.Logging;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Contracts;

namespace ProxyBackup.Scheduler;

/// <summary>How a <see cref="PolicyRunner"/> runs: limits, clock, and who hears of failures.</summary>
public sealed record PolicyRunnerOptions
{
    /// <summary>The proxy VM, never selected by a policy.</summary>
    public required int ProxyVmId { get; init; }

    /// <summary>The cluster the proxy VM runs in: it backs up only VMs whose disks' datastores that cluster reaches (null: every VM).</summary>
    public int? ProxyCluster { get; init; }
    public QueueLimits Limits { get; init; } = new();

    /// <summary>All time comes from here, so that tests drive it.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>Slots before this moment are not run (the daemon's start).</summary>
    public required DateTimeOffset Since { get; init; }

    /// <summary>Who hears of failures, VMs a policy cannot find, skipped runs, long waits and the daily summary (besides the log).</summary>
    public INotifier? Notifier { get; init; }

    /// <summary>A VM waiting in the queue longer than this is notified once (null: never).</summary>
    public TimeSpan? LongWait { get; init; }

    /// <summary>When the summary of the last day's jobs is sent (null: never); it reads <see cref="Jobs"/>.</summary>
    public CronSchedule? SummarySchedule { get; init; }
    public IJobRecorder? Jobs { get; init; }

    /// <summary>How old an unreferenced chunk must be before garbage collection removes it; null: the repository's default.</summary>
    public TimeSpan? GcGrace { get; init; }

    /// <summary>Runs before the first job of a batch starts (the cloud cleanup pass).</summary>
    public Func<CancellationToken, Task>? BeforeJobs { get; init; }

    /// <summary>Runs when this proxy takes over VMs from a proxy that is gone, before it starts them: the cleanup of what that proxy left, beside this one's running jobs.</summary>
    public Func<CancellationToken, Task>? AfterTakeOver { get; init; }

    /// <summary>The catalog's restore point list, kept in step after retention.</summary>
    public IRestorePointList? Index { get; init; }

    /// <summary>When the repository is verified (null: never); each run reads one part of <see cref="VerifyParts"/> of the chunks.</summary>
    public CronSchedule? VerifySchedule { get; init; }

    /// <summary>Into how many parts the chunks are cut for the scheduled verify: 7 with a daily schedule reads everything once a week; 1 reads all every time.</summary>
    public int VerifyParts { get; init; } = 7;

    /// <summary>Runs the policies' restore drills (null: drills are not run).</summary>
    public RestoreJob? Restore { get; init; }

    /// <summary>The off-site copies of the repository (docs/operations.md, "Off-site copies"): each after the backups or on its schedule.</summary>
    public IReadOnlyList<CopyTarget> Copies { get; init; } = [];
}

/// <summary>
/// The daemon's core: turns due policy runs into queued VM backups, starts them within the queue's
/// limits, retries failures, applies the policy's retention after each success and garbage
/// collection once a run has drained.
/// </summary>
public sealed partial class PolicyRunner(IPolicyStore store, OneClient client, BackupJob backup, BackupRepository repository, ILogger logger, PolicyRunnerOptions options)
{
    private readonly JobQueue _queue = new(options.Limits);
    private readonly List<Task> _running = [];
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, RunningJob> _jobs = new();
    private bool _forgotSomething;

    private DateTimeOffset? _nextVerify;
    private Task? _verify;

    /// <summary>Released when there is work to start before the next tick: an operator's backup, a job that ended and freed a slot.</summary>
    private readonly SemaphoreSlim _wake = new(0);

    public JobQueue Queue => _queue;

    /// <summary>A job under way: what it is doing, and how to stop it.</summary>
    public sealed class RunningJob(QueuedBackup item, CancellationTokenSource cancel) : IProgress<TransferProgress>
    {
        public QueuedBackup Item { get; } = item;
        public CancellationTokenSource Cancel { get; } = cancel;
        public TransferProgress? Latest { get; private set; }
        public void Report(TransferProgress value) => Latest = value;
    }

    /// <summary>What the daemon reports: the waiting VMs and the running ones with their latest progress (null before the first report).</summary>
    public (IReadOnlyList<QueuedBackup> Waiting, IReadOnlyList<(QueuedBackup Item, TransferProgress? Progress)> Running) Status()
    {
        // The queue is the one source of truth for waiting and running; progress is looked up beside it.
        var (waiting, running) = _queue.Snapshot();
        return (waiting, [.. running.Select(r => (r, _jobs.TryGetValue(r.VmId, out var job) ? job.Latest : null))]);
    }

    /// <summary>
    /// Queues a backup asked for by an operator (CLI, console): it goes before scheduled ones, and takes
    /// its snapshot set as the VM's own policy does (the first enabled one by priority that selects it).
    /// </summary>
    public async Task<bool> SubmitAsync(int vmId, bool full, CancellationToken ct)
    {
        var vm = await client.VmInfoAsync(vmId, ct).ConfigureAwait(false);
        var own = store.Policies().Where(p => p.Enabled && p.Selection.Matches(vm)).OrderByDescending(p => p.Priority).FirstOrDefault();
        var manual = new ProtectionPolicy
        {
            Name = "manual", Schedule = "@yearly", Selection = new VmSelection { VmIds = [vmId] }, Priority = int.MaxValue, Retries = 0,
            FullEveryRuns = full ? 1 : 0, Consistency = own?.Consistency ?? new(),
        };
        var queued = _queue.Enqueue(QueuedBackup.Of(vm, new DueRun(manual, options.Time.GetUtcNow(), null)));
        Wake();
        return queued;
    }

    /// <summary>Waits for the next tick, or less when an operator's backup or a freed slot may let a job start now.</summary>
    public async Task WaitForWorkAsync(TimeSpan tick, CancellationToken ct) => await _wake.WaitAsync(tick, ct).ConfigureAwait(false);

    private void Wake()
    {
        // One pending release is enough: the tick that follows starts whatever may start.
        lock (_wake) if (_wake.CurrentCount == 0) _wake.Release();
    }

    /// <summary>Stops the running job of a VM at its next safe point (it then cleans up).</summary>
    public bool CancelVm(int vmId)
    {
        if (!_jobs.TryGetValue(vmId, out var job)) return false;
        job.Cancel.Cancel();
        return true;
    }

    /// <summary>
    /// A stored policy this release can run: one saved by an older release whose schedule no longer
    /// reads (docs/operations.md, "Schedules") is logged and left out, not allowed to stop the others.
    /// </summary>
    private bool Runnable(ProtectionPolicy policy)
    {
        var problems = policy.Problems();
        if (problems.Count == 0) return true;
        logger.LogError("Policy {Policy} is not run: {Problems}. Save it again with 'proxybackup policy add'.", policy.Name, string.Join("; ", problems));
        return false;
    }

    /// <summary>One scheduling step: plan, enqueue, start what may start. Returns the number of jobs started.</summary>
    public async Task<int> TickAsync(CancellationToken ct)
    {
        var now = options.Time.GetUtcNow();
        var (due, skipped) = RunPlanner.Plan(store.Policies().Where(Runnable), store.LastSlots(), options.Since, now);
        // Planning goes through the catalog, once for all the proxies that share it: the one that
        // planned a run tells of it (docs/architecture.md, "Several proxies").
        foreach (var (policy, slot) in skipped)
        {
            if (!store.PlanRun(policy.Name, slot, null, [])) continue;
            logger.LogWarning("Policy {Policy}: the run of {Slot:u} was missed and its window has closed; skipped", policy.Name, slot);
            Notify(new Notification(NotificationEvent.WindowSkipped, $"Policy {policy.Name}: the run of {slot:yyyy-MM-dd HH:mm}Z was skipped, its window closed before it could start", policy.Name,
                Detail: "The appliance was down or busy when the run was due. The VMs of this run were not backed up; the next run is on schedule."));
        }
        IReadOnlyList<VirtualMachine>? vms = null;
        if (due.Count > 0)
        {
            vms = await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false);
            foreach (var run in due)
            {
                var selected = vms.Where(v => v.Id != options.ProxyVmId && run.Policy.Selection.Matches(v)).ToList();
                if (!store.PlanRun(run.Policy.Name, run.Slot, run.StartNoLaterThan, [.. selected.Select(v => (v.Id, v.Name))])) continue;
                logger.LogInformation("Policy {Policy}: run of {Slot:u}, {Count} VM(s) selected", run.Policy.Name, run.Slot, selected.Count);
                NotifyMissing(run.Policy, vms);
            }
        }
        await TakeQueuedRunsAsync(vms, ct).ConfigureAwait(false);
        var started = 0;
        if (RepositoryUnavailable())
        {
            // The VMs stay queued, and start (or, past their window, are told skipped) once the disk is back.
            NotifyLongWaits();
            return 0;
        }
        // The cleanup pass runs before jobs start, so that leftovers of earlier failures never pile up.
        if (options.BeforeJobs is not null && _queue.Waiting > 0 && _queue.Running.Count == 0) await options.BeforeJobs(ct).ConfigureAwait(false);
        while (true)
        {
            var (next, expired) = _queue.TryStart(options.Time.GetUtcNow());
            // A VM another proxy took meanwhile is its to tell of.
            expired = [.. expired.Where(Claim)];
            foreach (var e in expired) EndRun(e, "expired");
            foreach (var e in expired) logger.LogWarning("Policy {Policy}: VM {VmId} not started, the backup window closed", e.Run.Policy.Name, e.VmId);
            // One message per policy and step, however many VMs its window left behind.
            foreach (var policy in expired.GroupBy(e => e.Run.Policy.Name))
            {
                var vmsLeft = policy.ToList();
                Notify(new Notification(NotificationEvent.WindowSkipped,
                    vmsLeft.Count == 1
                        ? $"VM {vmsLeft[0].VmId} ({vmsLeft[0].VmName}) was not backed up: the window of policy {policy.Key} closed before it could start"
                        : $"{vmsLeft.Count} VMs of policy {policy.Key} were not backed up: its window closed before they could start",
                    policy.Key, vmsLeft.Count == 1 ? vmsLeft[0].VmId : null, vmsLeft.Count == 1 ? vmsLeft[0].VmName : null,
                    $"Not started: {string.Join(", ", vmsLeft.Select(e => $"VM {e.VmId} ({e.VmName})"))}. The queue was full for the whole window (Limits:MaxConcurrent, MaxPerHost, MaxPerDatastore): widen the window, raise the limits, or spread the policies."));
            }
            if (next is null) break;
            if (!Claim(next))
            {
                _queue.Finished(next);
                continue;
            }
            started++;
            lock (_running) _running.Add(RunOneAsync(next, ct));
        }
        lock (_running) _running.RemoveAll(t => t.IsCompleted);
        CollectGarbageIfDrained();
        StartCopiesIfDue(ct);
        StartVerifyIfDue(ct);
        StartDrillsIfDue(ct);
        NotifyLongWaits();
        SendSummaryIfDue();
        return started;
    }

    /// <summary>The catalog's queued VMs this proxy has taken into its own queue, by VM, until it starts them (<see cref="Claim"/>).</summary>
    private readonly Dictionary<int, QueuedRun> _taken = [];

    /// <summary>The claims this proxy holds in the catalog's run queue, by VM, until the VM's backup ends (retries included).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, QueuedRun> _claimed = new();

    /// <summary>
    /// Takes the catalog's queued VMs that no live proxy holds into this proxy's queue: not started
    /// yet, or held by a proxy that is gone (its job is then interrupted, and its leftovers cleaned up
    /// by the cleanup pass). A VM of two policies' runs at once is backed up once.
    /// </summary>
    private async Task TakeQueuedRunsAsync(IReadOnlyList<VirtualMachine>? vms, CancellationToken ct)
    {
        var (waiting, running) = _queue.Snapshot();
        var local = waiting.Concat(running).Select(q => q.VmId).ToHashSet();
        var fresh = store.ClaimableRuns().Where(r => !(_taken.TryGetValue(r.VmId, out var taken) && taken == r) && !_claimed.ContainsKey(r.VmId)).ToList();
        if (fresh.Count == 0) return;
        var policies = store.Policies().ToDictionary(p => p.Name, StringComparer.Ordinal);
        vms ??= await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false);
        // The gone proxy's snapshots and attached images go before its VMs are backed up again here.
        if (fresh.Any(r => r.Owner is not null) && options.AfterTakeOver is { } cleanUp) await cleanUp(ct).ConfigureAwait(false);
        var reach = new Reach(options.ProxyCluster, client, store);
        foreach (var run in fresh)
        {
            var vm = vms.FirstOrDefault(v => v.Id == run.VmId);
            if (vm is not null && options.ProxyCluster is not null && !await reach.ServedHereAsync(vm, ct).ConfigureAwait(false))
            {
                if (!await reach.ServedByAnyAsync(vm, ct).ConfigureAwait(false) && store.ClaimRun(run))
                {
                    store.EndRun(run, "unreachable");
                    NotifyUnreachable(run, vm, await reach.DatastoresAsync(vm, ct).ConfigureAwait(false));
                }
                // Else another proxy's cluster reaches it: left in the queue for that proxy.
                continue;
            }
            if (vm is not null) _unreachableTold.Remove(vm.Id);
            if (!policies.TryGetValue(run.Policy, out var policy) || vm is null)
            {
                if (!store.ClaimRun(run)) continue;
                store.EndRun(run, "gone");
                logger.LogWarning("Policy {Policy}: VM {VmId} ({Name}) was queued, but {What} is gone: not backed up", run.Policy, run.VmId, run.VmName, vm is null ? "the VM" : "the policy");
                continue;
            }
            if (run.Owner is { } gone)
            {
                // The gone proxy may have committed the VM's restore point and died before it said so: not backed up twice.
                if (repository.Latest(backup.Sources.Of(run.VmId)) is { } latest && latest.Time >= run.Slot)
                {
                    if (store.ClaimRun(run)) store.EndRun(run, "succeeded");
                    logger.LogInformation("Policy {Policy}: VM {VmId} was backed up by {Owner} ({Point}) before it was gone: not backed up again", run.Policy, run.VmId, gone, latest.Id);
                    continue;
                }
                logger.LogWarning("Policy {Policy}: VM {VmId} was started by {Owner}, which is gone: taken over", run.Policy, run.VmId, gone);
            }
            if (_taken.TryGetValue(run.VmId, out var queuedHere) && (queuedHere.Policy, queuedHere.Slot) == (run.Policy, run.Slot))
            {
                // Already waiting here for this very run, which a proxy that is gone took meanwhile: claimed from that proxy when it starts.
                _taken[run.VmId] = run;
                continue;
            }
            if (local.Contains(run.VmId))
            {
                // The one backup already queued or running stands for this run too.
                if (store.ClaimRun(run)) store.EndRun(run, "merged");
                logger.LogInformation("VM {VmId} is already queued or running; not queued again for {Policy}", run.VmId, run.Policy);
                continue;
            }
            if (!_queue.Enqueue(QueuedBackup.Of(vm, new DueRun(policy, run.Slot, run.StartBy)))) continue;
            local.Add(run.VmId);
            _taken[run.VmId] = run;
        }
    }

    /// <summary>
    /// Claims a queued VM in the catalog before it starts: false when another proxy took it first
    /// (it is then dropped here). A retry holds the claim of its first attempt; an operator's backup
    /// has none to take.
    /// </summary>
    private bool Claim(QueuedBackup item)
    {
        if (_claimed.ContainsKey(item.VmId) || !_taken.Remove(item.VmId, out var run)) return true;
        if (!store.ClaimRun(run)) return false;
        _claimed[item.VmId] = run with { Owner = null };
        return true;
    }

    /// <summary>Ends this proxy's claim on the VM's run, if it has one, with the outcome (null: back to the queue).</summary>
    private void EndRun(QueuedBackup item, string? outcome)
    {
        if (_claimed.TryRemove(item.VmId, out var run)) store.EndRun(run, outcome);
    }

    private bool _repositoryMissingTold;

    /// <summary>
    /// The repository's disk or share is not mounted (docs/operations.md, "Repository storage"): no job
    /// starts, so that every VM does not fail on its own; said once until the disk is back.
    /// </summary>
    private bool RepositoryUnavailable()
    {
        var missing = repository.MountPoint is { } mount && ProxyBackup.Repository.MountTable.At(mount) is null;
        if (missing && !_repositoryMissingTold)
        {
            logger.LogError("The repository disk is not mounted at {MountPoint}: no backup starts until it is", repository.MountPoint);
            Notify(new Notification(NotificationEvent.RepositoryUnavailable, $"The repository disk is not mounted at {repository.MountPoint}: backups are held",
                Detail: "Attach the repository's persistent datablock to the proxy VM and mount it (it is in /etc/fstab); the queued backups start then. 'proxybackup storage show' tells what is configured."));
        }
        else if (!missing && _repositoryMissingTold) logger.LogInformation("The repository disk is mounted again: backups start");
        _repositoryMissingTold = missing;
        return missing;
    }

    /// <summary>What each policy was last told to be missing: a policy naming a deleted VM is told once, and again when that changes.</summary>
    private readonly Dictionary<string, string> _missingTold = new(StringComparer.Ordinal);

    /// <summary>VMs a policy names (by ID or name) that the cloud no longer has: not protected.</summary>
    private void NotifyMissing(ProtectionPolicy policy, IReadOnlyList<VirtualMachine> vms)
    {
        var missing = policy.Selection.VmIds.Where(id => vms.All(v => v.Id != id)).Select(id => $"VM {id}")
            .Concat(policy.Selection.VmNames.Where(name => vms.All(v => v.Name != name)).Select(name => $"VM '{name}'")).ToList();
        var key = string.Join(", ", missing);
        if (missing.Count > 0) logger.LogWarning("Policy {Policy} names {Missing}, which OpenNebula does not have: not backed up", policy.Name, key);
        if (_missingTold.GetValueOrDefault(policy.Name, "") == key) return;
        _missingTold[policy.Name] = key;
        if (missing.Count == 0) return;
        Notify(new Notification(NotificationEvent.VmMissing, $"Policy {policy.Name} names {key}, which no longer exist{(missing.Count == 1 ? "s" : "")}", policy.Name,
            Detail: "Deleted or renamed VMs are not protected any more; their restore points stay. Fix the policy ('proxybackup policy add' with the new selection) or remove it."));
    }

    /// <summary>When each waiting item was first seen waiting (a retry waits anew), and whether its wait was told.</summary>
    private readonly Dictionary<(int VmId, DateTimeOffset Slot, int Attempt), (DateTimeOffset Since, bool Told)> _waits = [];

    /// <summary>The queued VMs that have waited longer than <see cref="PolicyRunnerOptions.LongWait"/>, each told once, together.</summary>
    private void NotifyLongWaits()
    {
        if (options.LongWait is not { } limit) return;
        var now = options.Time.GetUtcNow();
        var (waiting, _) = _queue.Snapshot();
        var keys = waiting.Select(w => (w.VmId, w.Run.Slot, w.Attempt)).ToHashSet();
        foreach (var gone in _waits.Keys.Where(k => !keys.Contains(k)).ToList()) _waits.Remove(gone);
        var late = new List<(QueuedBackup Item, TimeSpan Waited)>();
        foreach (var item in waiting)
        {
            var key = (item.VmId, item.Run.Slot, item.Attempt);
            var wait = _waits.TryGetValue(key, out var seen) ? seen : (Since: now, Told: false);
            if (!wait.Told && now - wait.Since > limit)
            {
                late.Add((item, now - wait.Since));
                wait.Told = true;
            }
            _waits[key] = wait;
        }
        if (late.Count == 0) return;
        logger.LogWarning("{Count} VM(s) have waited more than {Minutes:0} min in the queue", late.Count, limit.TotalMinutes);
        var first = late[0];
        Notify(new Notification(NotificationEvent.LongWait,
            late.Count == 1 ? $"VM {first.Item.VmId} ({first.Item.VmName}) has waited {first.Waited.TotalMinutes:0} min for its backup to start" : $"{late.Count} VMs have waited more than {limit.TotalMinutes:0} min for their backups to start",
            late.Count == 1 ? first.Item.Run.Policy.Name : null, late.Count == 1 ? first.Item.VmId : null, late.Count == 1 ? first.Item.VmName : null,
            $"Waiting: {string.Join(", ", late.Select(l => $"VM {l.Item.VmId} ({l.Item.VmName}, {l.Waited.TotalMinutes:0} min)"))}. Other backups hold the queue's slots (Limits:MaxConcurrent, MaxPerHost, MaxPerDatastore), a job is slow, or the repository is unavailable. 'proxybackup status' shows what runs."));
    }

    private DateTimeOffset? _nextSummary;

    /// <summary>The daily summary: the last 24 hours' backups, their failures with reasons, and what they read and stored.</summary>
    private void SendSummaryIfDue()
    {
        if (options.SummarySchedule is not { } schedule || options.Jobs is not { } jobs) return;
        var now = options.Time.GetUtcNow();
        _nextSummary ??= schedule.Next(now);
        if (now < _nextSummary) return;
        _nextSummary = schedule.Next(now);
        var day = jobs.Since(now.AddDays(-1)).Where(j => j.Kind == "backup").ToList();
        // Each VM counts once, by how its latest backup ended: a failed attempt retried with success is a success.
        var outcomes = day.GroupBy(j => j.VmId).Select(g => g.MaxBy(j => j.Started)!).ToList();
        var failed = outcomes.Where(j => j.State is "failed" or "interrupted").ToList();
        var succeeded = outcomes.Count(j => j.State == "succeeded");
        var lines = new List<string>
        {
            $"Backups in the last 24 hours: {succeeded} succeeded, {failed.Count} failed, {outcomes.Count(j => j.State == "running")} running (VMs, by their latest backup).",
            $"Read {day.Sum(j => j.BytesRead) / 1e9:0.0} GB, stored {day.Sum(j => j.BytesStored) / 1e9:0.0} GB new.",
        };
        var (waiting, running) = _queue.Snapshot();
        lines.Add($"Now: {running.Count} running, {waiting.Count} waiting.");
        if (failed.Count > 0)
        {
            lines.Add("");
            lines.Add("Failed:");
            lines.AddRange(failed.Select(j => $"  VM {j.VmId}  {j.Started:yyyy-MM-dd HH:mm}Z  {j.State}: {j.Error}  (proxybackup jobs log {j.Id})"));
        }
        Notify(new Notification(NotificationEvent.DailySummary,
            $"Daily summary: {succeeded} backup(s) succeeded, {failed.Count} failed", Detail: string.Join("\n", lines)));
    }

    /// <summary>
    /// The scheduled verify: beside the backups (it takes a shared lock), one part of the chunks a
    /// run, chosen by the day, so that N daily runs read every chunk once; damage is notified like a
    /// failed backup (docs/operations.md, "Scheduled verify").
    /// </summary>
    private void StartVerifyIfDue(CancellationToken ct)
    {
        if (options.VerifySchedule is not { } schedule || _verify is { IsCompleted: false }) return;
        var now = options.Time.GetUtcNow();
        _nextVerify ??= schedule.Next(now);
        if (now < _nextVerify) return;
        _nextVerify = schedule.Next(now);
        var part = (int)(now.ToUnixTimeSeconds() / 86_400 % options.VerifyParts) + 1;
        var subset = options.VerifyParts > 1 ? new VerifySubset(part, options.VerifyParts) : null;
        _verify = VerifyAsync(subset, ct);
        lock (_running) _running.Add(_verify);
    }

    private Task? _drills;

    /// <summary>The slot key of a policy's drills, beside its backups' (docs/operations.md, "Restore drills").</summary>
    private static string DrillSlot(ProtectionPolicy policy) => $"{policy.Name}#drill";

    /// <summary>
    /// Starts the drills of the policies whose drill schedule is due, one VM after another in the
    /// background (a drill restores a whole VM: two at once would halve each other's speed); a missed
    /// slot runs once, as a policy's backups do.
    /// </summary>
    private void StartDrillsIfDue(CancellationToken ct)
    {
        if (options.Restore is null || _drills is { IsCompleted: false }) return;
        var policies = store.Policies().Where(p => p.Enabled && p.Drill.Schedule is not null && Runnable(p)).ToDictionary(DrillSlot, StringComparer.Ordinal);
        if (policies.Count == 0) return;
        var (due, _) = RunPlanner.Plan(policies.Select(p => p.Value with { Name = p.Key, Schedule = p.Value.Drill.Schedule!, Window = null }), store.LastSlots(), options.Since, options.Time.GetUtcNow());
        // Planned through the catalog like a backup run: one proxy of those sharing it drills.
        var mine = due.Where(run => store.PlanRun(run.Policy.Name, run.Slot, null, [])).ToList();
        if (mine.Count == 0) return;
        _drills = DrillAsync([.. mine.Select(run => policies[run.Policy.Name])], ct);
        lock (_running) _running.Add(_drills);
    }

    /// <summary>Drills every VM the policies select from its latest restore point; a failure is told.</summary>
    internal async Task DrillAsync(IReadOnlyList<ProtectionPolicy> policies, CancellationToken ct)
    {
        await Task.Yield();
        try
        {
            var vms = await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false);
            foreach (var policy in policies)
                foreach (var vm in vms.Where(v => v.Id != options.ProxyVmId && policy.Selection.Matches(v)))
                {
                    if (repository.Latest(backup.Sources.Of(vm.Id)) is not { } point)
                    {
                        logger.LogWarning("Policy {Policy}: VM {VmId} has no restore point to drill yet", policy.Name, vm.Id);
                        continue;
                    }
                    var drill = policy.Drill;
                    var result = await options.Restore!.DrillAsync(point, new DrillOptions
                    {
                        ImageDatastoreId = drill.ImageDatastoreId, SystemDatastoreId = drill.SystemDatastoreId, CheckCommand = drill.CheckCommand,
                    }, null, ct).ConfigureAwait(false);
                    if (result.Succeeded && result.LeftNothing) continue;
                    Notify(new Notification(NotificationEvent.DrillFailed,
                        result.Succeeded ? $"The restore drill of VM {vm.Id} ({vm.Name}) left part of its sandbox" : $"The restore drill of VM {vm.Id} ({vm.Name}) failed",
                        policy.Name, vm.Id, vm.Name,
                        string.Join(" ", new[] { result.Failure is null ? null : $"{result.Failure}.", result.LeftNothing ? null : $"Left for the next cleanup pass: {string.Join("; ", result.Left)}." }.OfType<string>())
                        + $" Job {result.JobId}, restore point {result.PointId}: 'proxybackup jobs log {result.JobId}'."));
                }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested) { }
        catch (Exception e) when (e is UserFacingException)
        {
            logger.LogError("The scheduled drills stopped: {Error}", e.Message);
            Notify(new Notification(NotificationEvent.DrillFailed, "The scheduled restore drills could not run", Detail: e.Message));
        }
    }

    /// <summary>Runs one scheduled verify and reports what it found; returns the report (null when it could not run).</summary>
    internal async Task<VerifyReport?> VerifyAsync(VerifySubset? subset, CancellationToken ct)
    {
        await Task.Yield();
        try
        {
            var report = await repository.VerifyAsync(readData: true, ct: ct, subset: subset).ConfigureAwait(false);
            if (report.Ok)
            {
                logger.LogInformation("Scheduled verify ({Part}): {Points} restore point(s), {Read} of {Chunks} chunk(s) read, no damage", subset?.ToString() ?? "all", report.RestorePointsChecked, report.ChunksRead, report.ChunksChecked);
                return report;
            }
            var damaged = string.Join("; ", report.DamagedRestorePoints.Take(5).Select(p => $"{p.Key}: {p.Value[0]}"));
            await VerifyFailedAsync($"{report.DamagedRestorePoints.Count} restore point(s) damaged: {damaged}").ConfigureAwait(false);
            return report;
        }
        catch (Exception e) when (e is UserFacingException && !ct.IsCancellationRequested)
        {
            await VerifyFailedAsync(e.Message).ConfigureAwait(false);
            return null;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>A scheduled verify that failed is told like a failed backup: the log, and the notifiers (no policy, no VM).</summary>
    private async Task VerifyFailedAsync(string error)
    {
        logger.LogError("Scheduled verify failed: {Error}", error);
        Notify(new Notification(NotificationEvent.VerifyFailed, "The scheduled verify found damage or could not run", Detail: error));
    }

    /// <summary>Waits for the jobs under way (on shutdown they are cancelled by the token and clean up).</summary>
    public async Task DrainAsync()
    {
        Task[] tasks;
        lock (_running) tasks = [.. _running];
        await Task.WhenAll(tasks).ConfigureAwait(false);
        // What the jobs had to tell goes out before the daemon stops (a mail server gets its 30 s).
        await FlushNotificationsAsync(TimeSpan.FromSeconds(45)).ConfigureAwait(false);
    }

    private async Task RunOneAsync(QueuedBackup item, CancellationToken daemonToken)
    {
        var policy = item.Run.Policy;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(daemonToken);
        var ct = cancel.Token;
        var job = new RunningJob(item, cancel);
        _jobs[item.VmId] = job;
        var retry = false;
        string? outcome = "succeeded";
        // The runner's own lines of this attempt (retry, failure, retention) carry the job's fields too.
        var jobId = JobIds.New("b");
        using var scope = logger.BeginScope(JobIds.Scope(jobId, item.VmId, policy.Name));
        try
        {
            await Task.Yield();
            var full = RunPlanner.NeedsFull(policy, repository.ListRestorePoints(backup.Sources.Of(item.VmId)), options.Time.GetUtcNow());
            // The job's memory is taken before its first cloud call: a job that has to wait for it
            // waits here, before it has a snapshot on the cloud or a disk attached to the proxy.
            using var admission = await repository.Memory.AdmitAsync(repository.BackupMemoryAtFewest,
                () => job.Report(TransferProgress.WaitingForMemory("backup")), ct).ConfigureAwait(false);
            var result = await backup.RunAsync(item.VmId, new BackupOptions
            {
                Full = full, ExcludeDisks = policy.ExcludeDisks.ToHashSet(), Memory = admission, JobId = jobId, Consistency = policy.Consistency,
                // Read: the workers' memory and the job's place go to the next VM (docs/architecture.md, "What is serialised").
                DisksRead = () => { admission.Dispose(); _queue.DisksRead(item); Wake(); },
            }, job, ct).ConfigureAwait(false);
            logger.LogInformation("Policy {Policy}: VM {VmId} backed up as {Point} ({Kind})", policy.Name, item.VmId, result.RestorePoint.Id, full ? "full" : "incremental");
            await ApplyRetentionAsync(item).ConfigureAwait(false);
            _backedUpSinceCopy = true;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            logger.LogWarning("Backup of VM {VmId} stopped ({Why}); it cleaned up after itself", item.VmId, daemonToken.IsCancellationRequested ? "shutdown" : "cancelled by an operator");
            // Stopped by a shutdown, the VM goes back to the run's queue for another proxy, or this one once started again.
            outcome = daemonToken.IsCancellationRequested ? null : "cancelled";
        }
        catch (Exception e)
        {
            if (item.Attempt <= policy.Retries && !ct.IsCancellationRequested)
            {
                logger.LogWarning("Policy {Policy}: backup of VM {VmId} failed (attempt {Attempt}): {Error}; retrying", policy.Name, item.VmId, item.Attempt, e.Message);
                retry = true;
                return;
            }
            outcome = "failed";
            logger.LogError("Policy {Policy}: backup of VM {VmId} ({Name}) failed: {Error}", policy.Name, item.VmId, item.VmName, e.Message);
            Notify(new Notification(NotificationEvent.BackupFailed, $"Backup of VM {item.VmId} ({item.VmName}) failed", policy.Name, item.VmId, item.VmName, e.Message));
        }
        finally
        {
            // The entry goes before the queue lets the VM go: the queue runs one job per VM at a time,
            // so a retry (or the next backup) of it registers only after this.
            _jobs.TryRemove(item.VmId, out _);
            if (retry) _queue.Retry(item);
            else
            {
                EndRun(item, outcome);
                _queue.Finished(item);
            }
            Wake();
        }
    }

    /// <summary>
    /// The policy's retention after a successful backup. Its failure (the repository is busy, full,
    /// damaged) is reported as a retention failure: the backup stands and is not repeated.
    /// </summary>
    private async Task ApplyRetentionAsync(QueuedBackup item)
    {
        var policy = item.Run.Policy;
        if (policy.Retention.IsEmpty) return;
        var source = backup.Sources.Of(item.VmId);
        try
        {
            var removed = repository.ApplyRetention(policy.Retention, source, dryRun: false).Count(d => !d.Keep);
            if (removed == 0) return;
            // The backup job indexed its new point; only what retention removed is left to drop.
            options.Index?.SyncSource(repository, source);
            _forgotSomething = true;
            logger.LogInformation("Policy {Policy}: retention removed {Count} restore point(s) of VM {VmId}", policy.Name, removed, item.VmId);
        }
        catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
        {
            logger.LogError("Policy {Policy}: VM {VmId} ({Name}) was backed up, but its retention failed: {Error}", policy.Name, item.VmId, item.VmName, e.Message);
            Notify(new Notification(NotificationEvent.RetentionFailed, $"VM {item.VmId} ({item.VmName}) was backed up, but its retention failed", policy.Name, item.VmId, item.VmName, e.Message));
        }
    }

    /// <summary>Notifications waiting to be sent, in order, by one sender beside the scheduler: a slow or unreachable mail server never holds a tick or a job.</summary>
    private readonly System.Threading.Channels.Channel<Notification> _outbox = System.Threading.Channels.Channel.CreateUnbounded<Notification>(new() { SingleReader = true });
    private Task? _sender;
    private int _unsent;

    /// <summary>At most this many wait; beyond, new ones are dropped and said so in the log (a channel down for days must not grow memory).</summary>
    private const int MaxUnsent = 1000;

    /// <summary>Queues a notification for the sender; never waits.</summary>
    private void Notify(Notification notification)
    {
        if (options.Notifier is not { } notifier) return;
        if (Interlocked.Increment(ref _unsent) > MaxUnsent)
        {
            Interlocked.Decrement(ref _unsent);
            logger.LogWarning("The {Event} notification was dropped: {Max} are waiting to be sent", notification.EventName, MaxUnsent);
            return;
        }
        _outbox.Writer.TryWrite(notification);
        lock (_outbox) _sender ??= Task.Run(() => SendAsync(notifier));
    }

    private async Task SendAsync(INotifier notifier)
    {
        await foreach (var notification in _outbox.Reader.ReadAllAsync().ConfigureAwait(false))
        {
            // Each channel bounds its own wait (mail 30 s, webhook 15 s).
            try { await notifier.NotifyAsync(notification, CancellationToken.None).ConfigureAwait(false); }
            catch (Exception e)
            {
                logger.LogWarning("The {Event} notification could not be sent: {Error}", notification.EventName, e.Message);
            }
            finally
            {
                Interlocked.Decrement(ref _unsent);
            }
        }
    }

    /// <summary>Waits until every queued notification was sent or given up on, for at most <paramref name="limit"/>.</summary>
    public async Task FlushNotificationsAsync(TimeSpan limit)
    {
        var deadline = DateTime.UtcNow + limit;
        while (Volatile.Read(ref _unsent) > 0 && DateTime.UtcNow < deadline) await Task.Delay(20).ConfigureAwait(false);
    }

    private void CollectGarbageIfDrained()
    {
        if (!_forgotSomething || _queue.Waiting > 0 || _queue.Running.Count > 0) return;
        _forgotSomething = false;
        try
        {
            var report = repository.CollectGarbage(options.GcGrace);
            logger.LogInformation("Garbage collection: {Removed} chunk(s) removed, {Bytes} bytes freed", report.ChunksRemoved, report.BytesFreed);
        }
        catch (RepositoryLockedException e)
        {
            _forgotSomething = true;
            logger.LogInformation("Garbage collection postponed: {Reason}", e.Message);
        }
    }
}
