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

    /// <summary>The catalog's restore point list, kept in step after retention.</summary>
    public IRestorePointList? Index { get; init; }

    /// <summary>When the repository is verified (null: never); each run reads one part of <see cref="VerifyParts"/> of the chunks.</summary>
    public CronSchedule? VerifySchedule { get; init; }

    /// <summary>Into how many parts the chunks are cut for the scheduled verify: 7 with a daily schedule reads everything once a week; 1 reads all every time.</summary>
    public int VerifyParts { get; init; } = 7;
}

/// <summary>
/// The daemon's core: turns due policy runs into queued VM backups, starts them within the queue's
/// limits, retries failures, applies the policy's retention after each success and garbage
/// collection once a run has drained.
/// </summary>
public sealed class PolicyRunner(IPolicyStore store, OneClient client, BackupJob backup, BackupRepository repository, ILogger logger, PolicyRunnerOptions options)
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

    /// <summary>Queues a backup asked for by an operator (CLI, TUI): it goes before scheduled ones.</summary>
    public async Task<bool> SubmitAsync(int vmId, bool full, CancellationToken ct)
    {
        var vm = await client.VmInfoAsync(vmId, ct).ConfigureAwait(false);
        var manual = new ProtectionPolicy
        {
            Name = "manual", Schedule = "@yearly", Selection = new VmSelection { VmIds = [vmId] }, Priority = int.MaxValue, Retries = 0,
            FullEveryRuns = full ? 1 : 0,
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
        foreach (var (policy, slot) in skipped)
        {
            logger.LogWarning("Policy {Policy}: the run of {Slot:u} was missed and its window has closed; skipped", policy.Name, slot);
            store.SetLastSlot(policy.Name, slot);
            await NotifyAsync(new Notification(NotificationEvent.WindowSkipped, $"Policy {policy.Name}: the run of {slot:yyyy-MM-dd HH:mm}Z was skipped, its window closed before it could start", policy.Name,
                Detail: "The appliance was down or busy when the run was due. The VMs of this run were not backed up; the next run is on schedule.")).ConfigureAwait(false);
        }
        if (due.Count > 0)
        {
            var vms = await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false);
            foreach (var run in due)
            {
                var selected = vms.Where(v => v.Id != options.ProxyVmId && run.Policy.Selection.Matches(v)).ToList();
                logger.LogInformation("Policy {Policy}: run of {Slot:u}, {Count} VM(s) selected", run.Policy.Name, run.Slot, selected.Count);
                await NotifyMissingAsync(run.Policy, vms).ConfigureAwait(false);
                foreach (var vm in selected)
                    if (!_queue.Enqueue(QueuedBackup.Of(vm, run)))
                        logger.LogInformation("VM {VmId} is already queued or running; not queued again for {Policy}", vm.Id, run.Policy.Name);
                store.SetLastSlot(run.Policy.Name, run.Slot);
            }
        }
        var started = 0;
        // The cleanup pass runs before jobs start, so that leftovers of earlier failures never pile up.
        if (options.BeforeJobs is not null && _queue.Waiting > 0 && _queue.Running.Count == 0) await options.BeforeJobs(ct).ConfigureAwait(false);
        while (true)
        {
            var (next, expired) = _queue.TryStart(options.Time.GetUtcNow());
            foreach (var e in expired)
            {
                logger.LogWarning("Policy {Policy}: VM {VmId} not started, the backup window closed", e.Run.Policy.Name, e.VmId);
                await NotifyAsync(new Notification(NotificationEvent.WindowSkipped, $"VM {e.VmId} ({e.VmName}) was not backed up: the window of policy {e.Run.Policy.Name} closed before it could start",
                    e.Run.Policy.Name, e.VmId, e.VmName, "The queue was full for the whole window (Limits:MaxConcurrent, MaxPerHost, MaxPerDatastore). Widen the window, raise the limits, or spread the policies.")).ConfigureAwait(false);
            }
            if (next is null) break;
            started++;
            lock (_running) _running.Add(RunOneAsync(next, ct));
        }
        lock (_running) _running.RemoveAll(t => t.IsCompleted);
        CollectGarbageIfDrained();
        StartVerifyIfDue(ct);
        await NotifyLongWaitsAsync().ConfigureAwait(false);
        await SendSummaryIfDueAsync().ConfigureAwait(false);
        return started;
    }

    /// <summary>VMs a policy names (by ID or name) that the cloud no longer has: not protected, and said so at each run.</summary>
    private async Task NotifyMissingAsync(ProtectionPolicy policy, IReadOnlyList<VirtualMachine> vms)
    {
        var missing = policy.Selection.VmIds.Where(id => vms.All(v => v.Id != id)).Select(id => $"VM {id}")
            .Concat(policy.Selection.VmNames.Where(name => vms.All(v => v.Name != name)).Select(name => $"VM '{name}'")).ToList();
        if (missing.Count == 0) return;
        logger.LogWarning("Policy {Policy} names {Missing}, which OpenNebula does not have: not backed up", policy.Name, string.Join(", ", missing));
        await NotifyAsync(new Notification(NotificationEvent.VmMissing, $"Policy {policy.Name} names {string.Join(", ", missing)}, which no longer exist{(missing.Count == 1 ? "s" : "")}", policy.Name,
            Detail: "Deleted or renamed VMs are not protected any more; their restore points stay. Fix the policy ('proxybackup policy add' with the new selection) or remove it.")).ConfigureAwait(false);
    }

    private readonly HashSet<(int VmId, DateTimeOffset Slot, int Attempt)> _waitTold = [];

    /// <summary>Each queued VM that has waited longer than <see cref="PolicyRunnerOptions.LongWait"/> is told once.</summary>
    private async Task NotifyLongWaitsAsync()
    {
        if (options.LongWait is not { } limit) return;
        var now = options.Time.GetUtcNow();
        var (waiting, _) = _queue.Snapshot();
        _waitTold.RemoveWhere(k => !waiting.Any(w => (w.VmId, w.Run.Slot, w.Attempt) == k));
        foreach (var item in waiting.Where(w => now - w.Run.Slot > limit && _waitTold.Add((w.VmId, w.Run.Slot, w.Attempt))))
        {
            logger.LogWarning("VM {VmId} has waited {Minutes:0} min in the queue", item.VmId, (now - item.Run.Slot).TotalMinutes);
            await NotifyAsync(new Notification(NotificationEvent.LongWait, $"VM {item.VmId} ({item.VmName}) has waited {(now - item.Run.Slot).TotalMinutes:0} min for its backup to start", item.Run.Policy.Name, item.VmId, item.VmName,
                "Other backups hold the queue's slots (Limits:MaxConcurrent, MaxPerHost, MaxPerDatastore), or a job is slow. 'proxybackup status' shows what runs.")).ConfigureAwait(false);
        }
    }

    private DateTimeOffset? _nextSummary;

    /// <summary>The daily summary: the last 24 hours' backups, their failures with reasons, and what they read and stored.</summary>
    private async Task SendSummaryIfDueAsync()
    {
        if (options.SummarySchedule is not { } schedule || options.Jobs is not { } jobs) return;
        var now = options.Time.GetUtcNow();
        _nextSummary ??= schedule.Next(now);
        if (now < _nextSummary) return;
        _nextSummary = schedule.Next(now);
        var day = jobs.Since(now.AddDays(-1)).Where(j => j.Kind == "backup").ToList();
        var failed = day.Where(j => j.State is "failed" or "interrupted").ToList();
        var succeeded = day.Count(j => j.State == "succeeded");
        var lines = new List<string>
        {
            $"Backups in the last 24 hours: {succeeded} succeeded, {failed.Count} failed, {day.Count(j => j.State == "running")} running.",
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
        await NotifyAsync(new Notification(NotificationEvent.DailySummary,
            $"Daily summary: {succeeded} backup(s) succeeded, {failed.Count} failed", Detail: string.Join("\n", lines))).ConfigureAwait(false);
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
        await NotifyAsync(new Notification(NotificationEvent.VerifyFailed, "The scheduled verify found damage or could not run", Detail: error)).ConfigureAwait(false);
    }

    /// <summary>Waits for the jobs under way (on shutdown they are cancelled by the token and clean up).</summary>
    public async Task DrainAsync()
    {
        Task[] tasks;
        lock (_running) tasks = [.. _running];
        await Task.WhenAll(tasks).ConfigureAwait(false);
    }

    private async Task RunOneAsync(QueuedBackup item, CancellationToken daemonToken)
    {
        var policy = item.Run.Policy;
        using var cancel = CancellationTokenSource.CreateLinkedTokenSource(daemonToken);
        var ct = cancel.Token;
        var job = new RunningJob(item, cancel);
        _jobs[item.VmId] = job;
        var retry = false;
        // The runner's own lines of this attempt (retry, failure, retention) carry the job's fields too.
        var jobId = JobIds.New("b");
        using var scope = logger.BeginScope(JobIds.Scope(jobId, item.VmId, policy.Name));
        try
        {
            await Task.Yield();
            var full = RunPlanner.NeedsFull(policy, repository.ListRestorePoints(BackupJob.SourceOf(item.VmId)), options.Time.GetUtcNow());
            // The job's memory is taken before its first cloud call: a job that has to wait for it
            // waits here, before it has a snapshot on the cloud or a disk attached to the proxy.
            using var admission = await repository.Memory.AdmitAsync(repository.BackupMemoryAtFewest,
                () => job.Report(TransferProgress.WaitingForMemory("backup")), ct).ConfigureAwait(false);
            var result = await backup.RunAsync(item.VmId, new BackupOptions
            {
                Full = full, ExcludeDisks = policy.ExcludeDisks.ToHashSet(), Memory = admission, JobId = jobId,
                // Read: the workers' memory and the job's place go to the next VM (docs/architecture.md, "What is serialised").
                DisksRead = () => { admission.Dispose(); _queue.DisksRead(item); Wake(); },
            }, job, ct).ConfigureAwait(false);
            logger.LogInformation("Policy {Policy}: VM {VmId} backed up as {Point} ({Kind})", policy.Name, item.VmId, result.RestorePoint.Id, full ? "full" : "incremental");
            await ApplyRetentionAsync(item).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            logger.LogWarning("Backup of VM {VmId} stopped ({Why}); it cleaned up after itself", item.VmId, daemonToken.IsCancellationRequested ? "shutdown" : "cancelled by an operator");
        }
        catch (Exception e)
        {
            if (item.Attempt <= policy.Retries && !ct.IsCancellationRequested)
            {
                logger.LogWarning("Policy {Policy}: backup of VM {VmId} failed (attempt {Attempt}): {Error}; retrying", policy.Name, item.VmId, item.Attempt, e.Message);
                retry = true;
                return;
            }
            logger.LogError("Policy {Policy}: backup of VM {VmId} ({Name}) failed: {Error}", policy.Name, item.VmId, item.VmName, e.Message);
            await NotifyAsync(new Notification(NotificationEvent.BackupFailed, $"Backup of VM {item.VmId} ({item.VmName}) failed", policy.Name, item.VmId, item.VmName, e.Message)).ConfigureAwait(false);
        }
        finally
        {
            // The entry goes before the queue lets the VM go: the queue runs one job per VM at a time,
            // so a retry (or the next backup) of it registers only after this.
            _jobs.TryRemove(item.VmId, out _);
            if (retry) _queue.Retry(item);
            else _queue.Finished(item);
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
        var source = BackupJob.SourceOf(item.VmId);
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
            await NotifyAsync(new Notification(NotificationEvent.RetentionFailed, $"VM {item.VmId} ({item.VmName}) was backed up, but its retention failed", policy.Name, item.VmId, item.VmName, e.Message)).ConfigureAwait(false);
        }
    }

    /// <summary>Tells the notifiers; one that fails is logged (<see cref="NotifierSet"/>) and never fails the job.</summary>
    private async Task NotifyAsync(Notification notification)
    {
        if (options.Notifier is null) return;
        try { await options.Notifier.NotifyAsync(notification, CancellationToken.None).ConfigureAwait(false); }
        catch (Exception e) when (e is not OperationCanceledException) { logger.LogWarning("The {Event} notification could not be sent: {Error}", notification.EventName, e.Message); }
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
