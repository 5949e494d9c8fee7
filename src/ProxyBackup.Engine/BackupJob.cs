using System.Text;
using Microsoft.Extensions.Logging;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine;

public sealed record BackupOptions
{
    /// <summary>Do not compare with the previous restore point.</summary>
    public bool Full { get; init; }

    /// <summary>DISK_IDs not to back up (they are restored as empty disks).</summary>
    public IReadOnlySet<int> ExcludeDisks { get; init; } = new HashSet<int>();

    /// <summary>Memory the job took before its first cloud call (the daemon's PolicyRunner); its disk reads draw on it.</summary>
    public ChunkMemory.Admission? Memory { get; init; }

    /// <summary>
    /// Called once the job's last disk is read and its snapshots are deleted: what is left (its
    /// detach and image delete, the commit) waits on the cloud, not on the proxy's reading, and need
    /// not hold up the next VM, so the caller may start one (docs/architecture.md, "What is serialised").
    /// Not called when the job fails before.
    /// </summary>
    public Action? DisksRead { get; init; }

    /// <summary>The job's id, when the caller named its own log lines with it first (the daemon's runner); else a new one.</summary>
    public string? JobId { get; init; }

    /// <summary>How the disks' snapshots are taken and the commands around them (the policy's).</summary>
    public SnapshotConsistency Consistency { get; init; } = new();
}

public sealed record DiskBackupResult(int DiskId, string? Image, DiskBackupStats Stats);

/// <summary>A committed backup; <paramref name="Paused"/>: how long the VM was suspended for its snapshot set (null: it was not).</summary>
public sealed record BackupResult(string JobId, int VmId, string VmName, RestorePoint RestorePoint, IReadOnlyList<DiskBackupResult> Disks, IReadOnlyList<string> Warnings,
    TimeSpan? Paused = null);

/// <summary>
/// Backs up one VM through the proxy (docs/opennebula.md, "Backup flow"): metadata, the snapshot set
/// (every disk, taken as the policy's consistency mode says: <see cref="SnapshotSet"/>), then per disk save-as, attach to the proxy, read into the repository, detach
/// and delete the image; the snapshots are deleted once the last disk is saved, beside the reads;
/// the restore point is committed when every disk is read. On a failure before the commit, what
/// the job created is removed again before the error is reported; after it, what cannot be
/// removed is a warning and stays in the journal for the cleanup pass.
/// </summary>
public sealed class BackupJob(CloudSteps steps, CloudCleaner cleaner, IVmGuard guard, IJobRecorder jobs, BackupRepository repository, ILogger logger,
    IRestorePointList? index = null)
{
    /// <summary>How this cloud's restore points are named.</summary>
    public VmSources Sources => steps.Options.Sources;

    public async Task<BackupResult> RunAsync(int vmId, BackupOptions options, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        var jobId = options.JobId ?? JobIds.New("b");
        // Every line of the job carries its ids, as fields of their own where the log keeps them (the journal).
        using var scope = logger.BeginScope(JobIds.Scope(jobId, vmId));
        using var held = guard.Acquire(vmId, jobId, "backup");
        jobs.Started(jobId, "backup", vmId);
        jobs.Log(jobId, "info", $"backup of VM {vmId} started ({(options.Full ? "full" : "incremental if possible")})");
        var cloud = new CloudTransaction(jobId, steps, cleaner, logger);
        try
        {
            var result = await RunGuardedAsync(cloud, vmId, options, progress, ct).ConfigureAwait(false);
            foreach (var w in result.Warnings) jobs.Log(jobId, "warning", w);
            foreach (var d in result.Disks)
                jobs.Log(jobId, "info", $"disk {d.DiskId}: read {d.Stats.Read} bytes ({d.Stats.Zero} zero), changed {d.Stats.Changed}, stored {d.Stats.NewStored} new in {d.Stats.NewChunks} chunks, {d.Stats.Seconds:0.0} s");
            jobs.Log(jobId, "info", $"restore point {result.RestorePoint.Id} committed");
            jobs.Log(jobId, "info", cloud.HotplugSummary);
            index?.SyncSource(repository, Sources.Of(vmId));
            jobs.Finished(jobId, true, result.Disks.Sum(d => d.Stats.Read), result.Disks.Sum(d => d.Stats.NewStored), result.RestorePoint.Id, null);
            return result;
        }
        catch (Exception e) when (e is not OperationCanceledException || ct.IsCancellationRequested)
        {
            jobs.Log(jobId, "error", e is OperationCanceledException ? "cancelled; removing what the job created" : $"{e.Message}; removing what the job created");
            jobs.Finished(jobId, false, 0, 0, null, e is OperationCanceledException ? "cancelled" : e.Message);
            logger.LogError("Backup {JobId} of VM {VmId} failed: {Error}; removing what it created", jobId, vmId, e.Message);
            await cloud.CompensateAsync(cancelled: ct.IsCancellationRequested, jobs).ConfigureAwait(false);
            throw;
        }
    }

    private async Task<BackupResult> RunGuardedAsync(CloudTransaction cloud, int vmId, BackupOptions options, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var jobId = cloud.JobId;
        if (vmId == steps.Options.ProxyVmId) throw new JobFailedException($"VM {vmId} is the proxy VM itself; it cannot back itself up this way.");
        var vm = await cloud.ReadVmAsync(vmId, ct).ConfigureAwait(false);
        CheckBackupable(vm);
        await CheckHypervisorAsync(cloud, vm, ct).ConfigureAwait(false);
        var warnings = new List<string>();
        var disks = new List<VmDisk>();
        foreach (var d in vm.Disks)
        {
            if (options.ExcludeDisks.Contains(d.DiskId)) { warnings.Add($"disk {d.DiskId} excluded by request"); continue; }
            if (d.IsVolatile) { warnings.Add($"disk {d.DiskId} is volatile ({d.Type}): not backed up, it is re-created empty on restore"); continue; }
            if (d.IsCdrom) { warnings.Add($"disk {d.DiskId} is a CD-ROM (image {d.ImageId}): its image is referenced, not copied"); continue; }
            disks.Add(d);
        }
        foreach (var w in warnings) logger.LogWarning("VM {VmId}: {Warning}", vmId, w);
        if (disks.Count == 0) throw new JobFailedException($"VM {vmId} ({vm.Name}) has no disk that can be backed up.");

        var source = Sources.Of(vmId);
        var parent = options.Full ? null : repository.Latest(source);
        if (!options.Full && parent is null)
            warnings.Add($"full backup: the repository has no earlier restore point of VM {vmId} to compare with (its first backup, or forget/retention removed them all)");
        using var writer = repository.StartRestorePoint(source, parent, new Dictionary<string, string>
        {
            ["vm_id"] = vmId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["vm_name"] = vm.Name,
            ["kind"] = parent is null ? "full" : "incremental",
            ["job"] = jobId,
            ["disks_excluded"] = string.Join(',', options.ExcludeDisks.Order()),
            ["consistency"] = options.Consistency.Mode.ToString().ToLowerInvariant(),
            // Which cloud, also where the source does not say it (a cloud without a name).
            ["cloud"] = Sources.Cloud ?? "",
            ["cloud_endpoint"] = $"{steps.Client.Endpoint.Scheme}://{steps.Client.Endpoint.Authority}{steps.Client.Endpoint.AbsolutePath}",
        });
        writer.AddMetadata("vm.xml", Encoding.UTF8.GetBytes(vm.Xml.ToString()));
        foreach (var imageId in vm.Disks.Select(d => d.ImageId).OfType<int>().Distinct())
        {
            var image = await cloud.ReadImageAsync(imageId, ct).ConfigureAwait(false);
            writer.AddMetadata($"image-{imageId}.xml", Encoding.UTF8.GetBytes(image.Xml.ToString()));
        }

        var taken = await new SnapshotSet(cloud, jobs, logger).TakeAsync(vm, disks, options.Consistency, warnings, ct).ConfigureAwait(false);
        var snapshots = taken.Snapshots;

        // Overlap (docs/architecture.md, "What is serialised"): OpenNebula saves disk N+1 while the
        // proxy attaches and reads disk N, so at most two of the job's images exist at a time; once
        // the last disk is saved the VM is free, and its snapshots are deleted while the proxy reads
        // (the saved images hold the data; a VM busy saving refuses any other operation).
        var results = new List<DiskBackupResult>();
        Task<JobImage>? nextSave = cloud.SaveAsAsync(vm, disks[0], snapshots[disks[0].DiskId], ct);
        Task<List<string>>? snapshotRemoval = null;
        // Stopped only when the job fails before its commit: the compensation then removes what is
        // left within its budget. After the commit the removal is never cut half-way.
        using var stopRemoval = new CancellationTokenSource();
        try
        {
            for (var i = 0; i < disks.Count; i++)
            {
                var d = disks[i];
                var image = await nextSave!.ConfigureAwait(false);
                nextSave = i + 1 < disks.Count ? cloud.SaveAsAsync(vm, disks[i + 1], snapshots[disks[i + 1].DiskId], ct) : null;
                if (nextSave is null) snapshotRemoval = RemoveSnapshotsAsync(cloud, disks.Select(x => snapshots[x.DiskId]), stopRemoval.Token);
                var attachment = await cloud.AttachAsync(image, readOnly: true, ct).ConfigureAwait(false);
                DiskBackupStats stats;
                try
                {
                    stats = await writer.AddDiskAsync(d.DiskId.ToString(System.Globalization.CultureInfo.InvariantCulture), attachment.Device, progress, ct, options.Memory).ConfigureAwait(false);
                }
                catch
                {
                    await cloud.DetachAsync(attachment).ConfigureAwait(false);
                    throw;
                }
                if (i == disks.Count - 1 && options.DisksRead is { } disksRead)
                {
                    // Its snapshots are gone first (deleted beside the reads, so seldom waited for):
                    // the limits that start the next VM also bound the VMs with snapshots at once.
                    await ((Task)snapshotRemoval!).WaitAsync(ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
                    ct.ThrowIfCancellationRequested();
                    // The data is read: a caller's failure here is not the backup's.
                    try { disksRead(); }
                    catch (Exception e) when (e is not OutOfMemoryException) { logger.LogWarning("VM {VmId}: the disks-read callback failed: {Error}", vmId, e.Message); }
                }
                await TidyAsync(jobId, warnings, $"image {image.Id} ({image.Name})", async () =>
                {
                    await cloud.DetachAsync(attachment).ConfigureAwait(false);
                    await cloud.DeleteImageAsync(image, ct).ConfigureAwait(false);
                }).ConfigureAwait(false);
                results.Add(new DiskBackupResult(d.DiskId, d.Image, stats));
                logger.LogInformation("VM {VmId} disk {Disk}: read {Read} bytes, {New} new bytes stored", vmId, d.DiskId, stats.Read, stats.NewStored);
            }
        }
        catch
        {
            // What runs in the background must have ended (a save journaled its image, a snapshot
            // left the journal) before the job's compensation looks at the journal.
            await stopRemoval.CancelAsync().ConfigureAwait(false);
            await EndedAsync(nextSave, "save-as").ConfigureAwait(false);
            await EndedAsync(snapshotRemoval, "snapshot removal").ConfigureAwait(false);
            throw;
        }
        var index = writer.Commit();
        logger.LogInformation("Backup {JobId} of VM {VmId} committed as restore point {Point}", jobId, vmId, index.Id);
        // The data is in the repository: a snapshot that could not be deleted is a warning and
        // stays in the journal for the cleanup pass.
        warnings.AddRange(await snapshotRemoval!.ConfigureAwait(false));
        return new BackupResult(jobId, vmId, vm.Name, index, results, warnings, taken.Paused);
    }

    /// <summary>Waits for work the job started in the background; how it ended matters only for the debug log (the job is failing already).</summary>
    private async Task EndedAsync(Task? background, string what)
    {
        if (background is null) return;
        try { await background.ConfigureAwait(false); }
        catch (Exception e) when (e is not OutOfMemoryException) { logger.LogDebug("Background {What} ended with: {Error}", what, e.Message); }
    }

    /// <summary>
    /// Deletes the job's snapshots (or keeps the one OpenNebula will not let go) once every disk is
    /// saved, until <paramref name="stop"/> (the job failed before its commit). Returns the
    /// warnings: what stays on the cloud and why.
    /// </summary>
    private async Task<List<string>> RemoveSnapshotsAsync(CloudTransaction cloud, IEnumerable<JobSnapshot> snapshots, CancellationToken stop)
    {
        var warnings = new List<string>();
        foreach (var snapshot in snapshots)
        {
            stop.ThrowIfCancellationRequested();
            await TidyAsync(cloud.JobId, warnings, $"snapshot {snapshot.Id} of disk {snapshot.DiskId}", async () =>
            {
                if (await cloud.RemoveSnapshotAsync(snapshot, stop).ConfigureAwait(false) is { } kept)
                    warnings.Add(kept);
            }).ConfigureAwait(false);
        }
        return warnings;
    }

    /// <summary>
    /// Removes what the job no longer needs once a disk's data is read. A failure is a warning, not
    /// the job's end: the data is whole, and the journal keeps the object for the cleanup pass.
    /// </summary>
    private async Task TidyAsync(string jobId, List<string> warnings, string what, Func<Task> tidy)
    {
        try { await tidy().ConfigureAwait(false); }
        catch (UserFacingException e)
        {
            var warning = $"{what} is left on the cloud for the next cleanup pass: {e.Message}";
            warnings.Add(warning);
            logger.LogWarning("Backup {JobId}: {Warning}", jobId, warning);
        }
    }

    private static void CheckBackupable(VirtualMachine vm)
    {
        var ok = vm is { State: VmState.Active, LcmState: LcmState.Running } || vm.State is VmState.Poweroff or VmState.Suspended;
        if (!ok)
            throw new JobFailedException($"VM {vm.Id} ({vm.Name}) is {vm.StateName}: a backup needs it RUNNING, POWEROFF or SUSPENDED. Retry when its current operation has ended.");
        if (string.Equals(vm.BackupMode, "INCREMENT", StringComparison.OrdinalIgnoreCase))
            throw new JobFailedException($"VM {vm.Id} ({vm.Name}) uses OpenNebula's native incremental backups (BACKUP_CONFIG/MODE=INCREMENT), which forbid disk snapshots; switch it to FULL mode to protect it with ProxyBackup.");
    }

    /// <summary>
    /// KVM is decided by what the VM's host reports (its monitoring's HYPERVISOR), not by the name a
    /// site gave the driver; a driver an operator allows is taken as KVM (docs/opennebula.md, "Hypervisors").
    /// </summary>
    private async Task CheckHypervisorAsync(CloudTransaction cloud, VirtualMachine vm, CancellationToken ct)
    {
        if (vm.CurrentHistory is not { } history) return;
        var mad = history.VmMad ?? "";
        if (steps.Options.AllowedVmDrivers.Contains(mad)) return;
        var host = await cloud.ReadHostAsync(history.HostId, ct).ConfigureAwait(false);
        var hypervisor = host.Hypervisor;
        if (hypervisor is "kvm" or "qemu") return;
        // A host not monitored yet reports nothing: the driver's own name is then the best hint.
        if (hypervisor is null && (mad.StartsWith("kvm", StringComparison.OrdinalIgnoreCase) || mad.StartsWith("qemu", StringComparison.OrdinalIgnoreCase))) return;
        throw new JobFailedException($"VM {vm.Id} ({vm.Name}) runs on host {host.Id} ({host.Name}), whose hypervisor is '{hypervisor ?? "not reported"}' with the VM driver '{mad}'; ProxyBackup protects KVM VMs. " +
            $"If '{mad}' runs KVM, allow it: OpenNebula:AllowedVmDrivers [\"{mad}\"] in the configuration, or --allow-vm-driver {mad}.");
    }
}

/// <summary>Short, unique, sortable job ids that are also valid in OpenNebula object names.</summary>
public static class JobIds
{
    public static string New(string kind) =>
        $"{kind}{DateTime.UtcNow:yyyyMMddHHmmss}{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(2))}";

    /// <summary>A log scope naming the job, its VM and its policy (journal fields JOB_ID, VM_ID, POLICY).</summary>
    public static IReadOnlyDictionary<string, object> Scope(string jobId, int vmId, string? policy = null)
    {
        var scope = new Dictionary<string, object> { ["JobId"] = jobId, ["VmId"] = vmId };
        if (policy is not null) scope["Policy"] = policy;
        return scope;
    }
}
