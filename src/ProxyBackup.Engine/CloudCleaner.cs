using Microsoft.Extensions.Logging;
using ProxyBackup.OpenNebula;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine;

/// <summary>What a cleanup pass did: removed, could not remove yet (<see cref="Failures"/>), and left to a running owner (<see cref="Pending"/>).</summary>
public sealed record CleanupReport(int Removed, IReadOnlyList<string> Failures, IReadOnlyList<string> Pending);

/// <summary>
/// Removes what jobs left on the cloud, from the journal: attachments first (an attached image
/// cannot be deleted), then images, disk snapshots and templates. Runs at start-up, before every
/// job, and after a failed job. An object found gone counts as removed; one that cannot be removed
/// yet stays in the journal for the next pass. A pass over every job's entries leaves alone those
/// of another process that is still running (the daemon's jobs, a CLI restore): they are its own
/// to remove (docs/architecture.md, "Every cloud object has an owner").
/// </summary>
public sealed class CloudCleaner(CloudSteps steps, ICloudJournal journal, ILogger logger)
{
    /// <summary>Entries whose removal ran out of its budget: not tried again before the time given (the pause doubles, up to an hour).</summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<long, (DateTimeOffset NotBefore, TimeSpan Pause)> _stuck = new();

    /// <summary>
    /// Removes what a failed job made. A cancelled job (operator, SIGTERM) gets a short budget, so
    /// that it ends within seconds: what it could not remove in time stays journaled for the next
    /// pass, and the job's log says which.
    /// </summary>
    public async Task CleanAfterJobAsync(string jobId, bool cancelled, IJobRecorder jobs)
    {
        using var budget = cancelled ? new CancellationTokenSource(steps.Options.CancelledCleanupBudget) : new CancellationTokenSource();
        var report = await CleanAsync(jobId, budget.Token).ConfigureAwait(false);
        if (report.Failures.Count == 0) return;
        var left = string.Join("; ", report.Failures);
        jobs.Log(jobId, "warning", $"left on the cloud for the next cleanup pass: {left}");
        logger.LogError("Left on the cloud after the failed job {JobId}, for the next cleanup pass: {Failures}", jobId, left);
    }

    /// <summary>
    /// The pass before jobs start (daemon start, each run, a CLI job): each leftover gets
    /// <see cref="EngineOptions.CleanupObjectBudget"/>, so a stuck one never holds up the jobs.
    /// </summary>
    public Task<CleanupReport> CleanBeforeJobsAsync(CancellationToken ct) => CleanAsync(ct: ct, objectBudget: steps.Options.CleanupObjectBudget);

    /// <summary>
    /// What processes that are gone left (a proxy sharing the catalog that died, whose VMs this one
    /// takes over), beside this process's own jobs, which it leaves alone: each leftover bounded as
    /// in <see cref="CleanBeforeJobsAsync"/>.
    /// </summary>
    public Task<CleanupReport> CleanAfterTheGoneAsync(CancellationToken ct) => CleanAsync(ct: ct, objectBudget: steps.Options.CleanupObjectBudget, othersOnly: true);

    /// <summary>
    /// A pass over the journal (one job's entries, or all). With <paramref name="objectBudget"/>, each
    /// removal is bounded: one that runs out is reported pending and paused, so a stuck object does
    /// not hold up the jobs this pass runs before (docs/architecture.md, "Every cloud object has an owner").
    /// </summary>
    /// <param name="othersOnly">Only entries of other processes (with their owner recorded), never this one's.</param>
    public async Task<CleanupReport> CleanAsync(string? jobId = null, CancellationToken ct = default, TimeSpan? objectBudget = null, bool othersOnly = false)
    {
        var failures = new List<string>();
        var pending = new List<string>();
        var removed = 0;
        // A VM a job suspended runs again first: its users wait, the leftovers do not.
        // A disk an in-place restore detached goes back once its image is off the proxy, before images are deleted.
        var order = new[] { CloudObjectKind.SuspendedVm, CloudObjectKind.SandboxVm, CloudObjectKind.Attachment, CloudObjectKind.DetachedDisk, CloudObjectKind.Image, CloudObjectKind.DiskSnapshot, CloudObjectKind.Template };
        foreach (var entry in journal.Pending(jobId).OrderBy(e => Array.IndexOf(order, e.Kind)).ThenByDescending(e => e.Id))
        {
            if (othersOnly && entry.Owner is not { IsCurrent: false }) continue;
            if (jobId is null && entry.Owner is { IsCurrent: false } owner && owner.MayBeAlive(entry.OwnerLeaseRenewed, steps.Options.Time.GetUtcNow()))
            {
                pending.Add($"{entry.Kind} {entry.Name}: owned by job {entry.JobId}, still running ({owner})");
                continue;
            }
            var now = steps.Options.Time.GetUtcNow();
            if (_stuck.TryGetValue(entry.Id, out var paused) && paused.NotBefore > now)
            {
                pending.Add($"{entry.Kind} {entry.Name}: did not go within its time last pass; tried again after {paused.NotBefore:u}");
                continue;
            }
            if (ct.IsCancellationRequested)
            {
                failures.Add($"{entry.Kind} {entry.Name}: not tried, the cleanup's time ran out; left for the next pass");
                continue;
            }
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
            if (objectBudget is { } limit) bounded.CancelAfter(limit);
            try
            {
                await RemoveAsync(entry, bounded.Token).ConfigureAwait(false);
                journal.Remove(entry.Id);
                _stuck.TryRemove(entry.Id, out _);
                removed++;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                failures.Add($"{entry.Kind} {entry.Name}: the cleanup's time ran out; left for the next pass");
            }
            catch (OperationCanceledException) when (bounded.IsCancellationRequested)
            {
                var pause = _stuck.TryGetValue(entry.Id, out var before) ? TimeSpan.FromTicks(Math.Min(before.Pause.Ticks * 2, TimeSpan.FromHours(1).Ticks)) : TimeSpan.FromMinutes(1);
                _stuck[entry.Id] = (now + pause, pause);
                pending.Add($"{entry.Kind} {entry.Name}: did not go within {objectBudget!.Value.TotalSeconds:0} s; tried again after {now + pause:u}");
                logger.LogWarning("Cleanup of {Kind} {Name} did not end within {Budget} s; tried again in {Pause}", entry.Kind, entry.Name, objectBudget.Value.TotalSeconds, pause);
            }
            catch (StillInFlightException e)
            {
                pending.Add($"{entry.Kind} {entry.Name}: {e.Message}");
            }
            catch (HandedOverException e)
            {
                journal.Remove(entry.Id);
                logger.LogInformation("{Kind} {Name} belongs to {Owner} now; not a leftover", entry.Kind, entry.Name, e.Message);
            }
            catch (UserFacingException e)
            {
                failures.Add($"{entry.Kind} {entry.Name}: {e.Message}");
                logger.LogWarning("Cleanup of {Kind} {Name} failed, kept for the next pass: {Error}", entry.Kind, entry.Name, e.Message);
            }
        }
        if (removed > 0) logger.LogInformation("Cleanup removed {Count} leftover object(s) from the cloud", removed);
        return new CleanupReport(removed, failures, pending);
    }

    /// <summary>
    /// An object whose id was never learned and that cannot be found may still be on its way (the
    /// request was in flight when the job died): the entry stays until the grace has passed.
    /// </summary>
    private void KeepWhileInFlight(JournalEntry entry)
    {
        if (steps.Options.Time.GetUtcNow() - entry.Created < CloudSteps.InFlightGrace)
            throw new StillInFlightException($"not found yet; its creation may still be under way (looked for until {entry.Created + CloudSteps.InFlightGrace:u})");
    }

    /// <summary>Not a failure: the object may still appear; the entry is reported as pending.</summary>
    private sealed class StillInFlightException(string message) : UserFacingException(message);

    /// <summary>Not a failure: the object became part of a VM (a restore's image); the message names the VM.</summary>
    private sealed class HandedOverException(string owner) : UserFacingException(owner);

    private async Task RemoveAsync(JournalEntry entry, CancellationToken ct)
    {
        var client = steps.Client;
        switch (entry.Kind)
        {
            case CloudObjectKind.Attachment when entry.ObjectId is { } imageId:
                // From the proxy VM that attached it: with proxies sharing the catalog, maybe not this one.
                await steps.DetachFromProxyAsync(imageId, ct, entry.VmId).ConfigureAwait(false);
                break;
            case CloudObjectKind.Image:
                var id = entry.ObjectId ?? (await client.ImagePoolAsync(-3, ct: ct).ConfigureAwait(false)).FirstOrDefault(i => i.Name == entry.Name)?.Id;
                if (id is null)
                {
                    KeepWhileInFlight(entry);
                    return;
                }
                OneImage image;
                // Gone already: a job cancelled while waiting for its own delete of the image to finish.
                try { image = await client.ImageInfoAsync(id.Value, ct).ConfigureAwait(false); }
                catch (OneNotFoundException) { return; }
                // A restore's image that a VM other than the proxy uses was handed over to the restored VM.
                if (image.Vms.Where(v => v != steps.Options.ProxyVmId).ToList() is [var restored, ..])
                    throw new HandedOverException($"VM {restored}");
                // An image left attached by a job killed before it journaled the attachment.
                if (image.Vms.Contains(steps.Options.ProxyVmId)) await steps.DetachFromProxyAsync(id.Value, ct).ConfigureAwait(false);
                await steps.DeleteImageAsync(id.Value, ct).ConfigureAwait(false);
                break;
            case CloudObjectKind.DiskSnapshot:
                VirtualMachine vm;
                try { vm = await client.VmInfoAsync(entry.VmId, ct).ConfigureAwait(false); }
                catch (OneNotFoundException) { return; }
                if (vm.State == VmState.Done) return;
                var snap = vm.SnapshotsOf(entry.DiskId).FirstOrDefault(s => s.Id == entry.ObjectId || s.Name == entry.Name);
                if (snap is not null) await steps.RemoveJobSnapshotAsync(entry.VmId, entry.DiskId, snap.Id, ct).ConfigureAwait(false);
                else if (entry.ObjectId is null) KeepWhileInFlight(entry);
                break;
            case CloudObjectKind.SuspendedVm:
                VirtualMachine suspended;
                try { suspended = await client.VmInfoAsync(entry.VmId, ct).ConfigureAwait(false); }
                catch (OneNotFoundException) { return; }
                // Resumed only from the state the job left it in: anything else is someone's decision since.
                if (suspended.State == VmState.Suspended) await steps.ResumeAsync(entry.VmId, ct).ConfigureAwait(false);
                break;
            case CloudObjectKind.DetachedDisk:
                VirtualMachine owner;
                try { owner = await client.VmInfoAsync(entry.VmId, ct).ConfigureAwait(false); }
                catch (OneNotFoundException) { return; }
                var original = System.Xml.Linq.XElement.Parse(entry.Name);
                var target = original.Element("TARGET")?.Value;
                if (owner.State == VmState.Done || owner.Disks.Any(d => d.Target == target) || entry.ObjectId is not { } holding) return;
                if (owner.State is not (VmState.Poweroff or VmState.Active))
                    throw new JobFailedException($"VM {entry.VmId} is {owner.StateName}: its disk {target} (image {holding}) is attached back once it is POWEROFF or RUNNING");
                await steps.AttachToVmAsync(entry.VmId, RestoreTemplate.AttachDisk(original, holding), holding, ct).ConfigureAwait(false);
                logger.LogWarning("Disk {Target} of VM {VmId} attached back (image {Image}) after an interrupted in-place restore: its content may be part restored; run the restore again", target, entry.VmId, holding);
                break;
            case CloudObjectKind.SandboxVm:
                var sandboxId = entry.ObjectId ?? (await client.VmPoolAsync(-3, ct: ct).ConfigureAwait(false)).FirstOrDefault(v => v.Name == entry.Name)?.Id;
                if (sandboxId is null)
                {
                    KeepWhileInFlight(entry);
                    return;
                }
                await steps.TerminateAsync(sandboxId.Value, ct).ConfigureAwait(false);
                break;
            case CloudObjectKind.Template:
                var tid = entry.ObjectId ?? (await client.TemplatePoolAsync(-3, ct: ct).ConfigureAwait(false)).FirstOrDefault(t => t.Name == entry.Name)?.Id;
                if (tid is null)
                {
                    KeepWhileInFlight(entry);
                    return;
                }
                try { await client.TemplateDeleteAsync(tid.Value, recursive: false, ct).ConfigureAwait(false); }
                catch (OneNotFoundException) { }
                break;
        }
    }
}
