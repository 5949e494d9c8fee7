using ProxyBackup.Contracts;
using Microsoft.Extensions.Logging;
using ProxyBackup.Devices;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>
/// The cloud operations the jobs are made of, each journaled before it creates anything and
/// verified afterwards in the documents (a call's success only means "accepted").
/// </summary>
public sealed class CloudSteps(OneClient client, ICloudJournal journal, DeviceLocator locator, EngineOptions options, ILogger logger)
{
    private readonly ProxyHotplugLock _hotplug = new(options.HotplugLockFile);
    private readonly OneWaiter _waiter = new(client, options.FirstPoll, options.MaxPoll, options.Time);
    // Waits under the hot-plug lock hold up every other job's disk: seen done within a tenth of
    // their time, not a fifth (docs/architecture.md, "What is serialised").
    private readonly OneWaiter _hotplugWaiter = new(client, options.FirstPoll, options.MaxPoll, options.Time, lateness: 0.1);

    /// <summary>A creating request may still be in flight this long after its journal entry (a lost answer, a killed process).</summary>
    public static readonly TimeSpan InFlightGrace = TimeSpan.FromMinutes(15);

    /// <summary>Jobs reach these through their <see cref="CloudTransaction"/>; the cleaner and snapshot commands directly.</summary>
    internal OneClient Client => client;
    internal ICloudJournal Journal => journal;
    public OneWaiter Waiter => _waiter;
    public EngineOptions Options => options;

    /// <summary>
    /// Removes a snapshot a job took. One that oned keeps for good (snapshot 0 of a persistent disk
    /// where the datastore has ALLOW_ORPHANS=NO) is renamed so that an operator knows it, and kept:
    /// the next backups take theirs on top of it and can delete those (docs/architecture.md,
    /// "Snapshots OpenNebula keeps"). Returns what stays on the cloud and why, or null.
    /// </summary>
    public async Task<string?> RemoveJobSnapshotAsync(int vmId, int diskId, int snapId, CancellationToken ct)
    {
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.Snapshots.FirstOrDefault(s => s.DiskId == diskId) is not { } set || set.Snapshots.All(s => s.Id != snapId) || vm.Disk(diskId) is not { } disk)
            return null;
        if (SnapshotRules.DeleteRefusal(set, snapId, disk) is { } why)
        {
            var kept = KeptSnapshotName(diskId);
            await client.VmDiskSnapshotRenameAsync(vmId, diskId, snapId, kept, ct).ConfigureAwait(false);
            logger.LogWarning("VM {VmId} disk {Disk}: snapshot {Snap} kept on the cloud as {Name}: {Why}", vmId, diskId, snapId, kept, why);
            return $"snapshot {snapId} of disk {diskId} stays on the cloud as '{kept}': {why}. Later backups of this disk take their snapshot on top of it and delete theirs";
        }
        await DeleteSnapshotAsync(vmId, diskId, snapId, ct).ConfigureAwait(false);
        return null;
    }

    /// <summary>
    /// Powers a running VM off (ACPI, or hard) and waits for POWEROFF; a guest that ignores the ACPI
    /// request leaves it RUNNING, which is said so (docs/opennebula.md, "State sequences").
    /// </summary>
    public async Task PowerOffAsync(int vmId, bool hard, CancellationToken ct)
    {
        logger.LogInformation("Powering off VM {VmId} ({Mode})", vmId, hard ? "hard" : "graceful");
        await client.VmActionAsync(hard ? "poweroff-hard" : "poweroff", vmId, ct).ConfigureAwait(false);
        var vm = await _waiter.VmUntilAsync(vmId, "POWEROFF", v => v.State == VmState.Poweroff || (v.Settlement == VmSettlement.Settled && v.LcmState == LcmState.Running && v.State == VmState.Active && v.PrevLcmIs(LcmState.ShutdownPoweroff)), options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.State != VmState.Poweroff)
            throw new JobFailedException($"VM {vmId} did not power off (the guest ignored the ACPI request); retry with a hard power-off.");
    }

    /// <summary>Detaches a disk of a VM (powered off for an in-place restore) and checks that it is gone.</summary>
    public async Task DetachFromVmAsync(int vmId, int diskId, CancellationToken ct)
    {
        await client.VmDetachAsync(vmId, diskId, ct).ConfigureAwait(false);
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct, new("detach")).ConfigureAwait(false);
        if (vm.Disk(diskId) is not null) throw new JobFailedException($"Detaching disk {diskId} of VM {vmId} failed{Why(vm)}.");
    }

    /// <summary>Attaches an image to a VM as the DISK given and returns the disk it became (found by its image: DISK_IDs are not reused, docs/opennebula.md "Hotplug").</summary>
    public async Task<VmDisk> AttachToVmAsync(int vmId, OneTemplate disk, int imageId, CancellationToken ct)
    {
        await client.VmAttachAsync(vmId, disk, ct).ConfigureAwait(false);
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct, new("attach")).ConfigureAwait(false);
        return vm.Disks.FirstOrDefault(d => d.ImageId == imageId)
            ?? throw new JobFailedException($"Attaching image {imageId} to VM {vmId} failed{Why(vm)}.");
    }

    /// <summary>Terminates a VM (hard: a drill's sandbox has nothing to shut down cleanly) and waits until it is DONE, its images free again.</summary>
    public async Task TerminateAsync(int vmId, CancellationToken ct)
    {
        try
        {
            if ((await client.VmInfoAsync(vmId, ct).ConfigureAwait(false)).State == VmState.Done) return;
            await client.VmActionAsync("terminate-hard", vmId, ct).ConfigureAwait(false);
            await _waiter.VmUntilAsync(vmId, "DONE", vm => vm.State == VmState.Done, options.OperationTimeout, ct).ConfigureAwait(false);
        }
        catch (OneNotFoundException) { }
    }

    /// <summary>Resumes a suspended or powered-off VM and waits until it runs.</summary>
    public async Task ResumeAsync(int vmId, CancellationToken ct)
    {
        await client.VmActionAsync("resume", vmId, ct).ConfigureAwait(false);
        await _waiter.VmRunningAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
    }

    /// <summary>The name of the one snapshot per disk that OpenNebula does not let the appliance delete.</summary>
    public string KeptSnapshotName(int diskId) => $"{options.NamePrefix}-kept-d{diskId}";

    /// <summary>Deletes a snapshot the caller has seen on a settled VM, and checks it is gone.</summary>
    public async Task DeleteSnapshotAsync(int vmId, int diskId, int snapId, CancellationToken ct)
    {
        await client.VmDiskSnapshotDeleteAsync(vmId, diskId, snapId, ct).ConfigureAwait(false);
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct, new("snapshot-delete")).ConfigureAwait(false);
        if (vm.SnapshotsOf(diskId).Any(s => s.Id == snapId))
            throw new JobFailedException($"Snapshot {snapId} of disk {diskId} of VM {vmId} could not be deleted{Why(vm)}.");
    }

    /// <summary>
    /// Deletes an image the job made. Who uses it is asked first: an image a VM uses is refused at
    /// once, never waited for; one still being copied (LOCKED) is waited for, within the operation bound.
    /// </summary>
    public async Task DeleteImageAsync(int imageId, CancellationToken ct)
    {
        OneImage image;
        try { image = await client.ImageInfoAsync(imageId, ct).ConfigureAwait(false); }
        catch (OneNotFoundException) { return; }
        if (image.RunningVms > 0 || image.Vms.Count > 0)
            throw new JobFailedException($"Image {imageId} ({image.Name}) is still used by VM(s) {string.Join(", ", image.Vms)}; not deleting it.");
        // An image still being copied is waited for; one in ERROR (now or by then) is deleted as it is.
        if (image.State != ImageState.Error)
        {
            try { await _waiter.ImageReadyAsync(imageId, options.OperationTimeout, ct).ConfigureAwait(false); }
            catch (OneNotFoundException) { return; }
            catch (OneOperationFailedException) { }
        }
        try { await client.ImageDeleteAsync(imageId, force: false, ct).ConfigureAwait(false); }
        catch (OneNotFoundException) { return; }
        await _waiter.ImageGoneAsync(imageId, options.OperationTimeout, ct, new("image-delete")).ConfigureAwait(false);
    }

    /// <summary>
    /// Attaches an image to the proxy with an sd TARGET chosen here (so that its SCSI target is
    /// known), waits for the hot-plug, and finds the block device. Returns the proxy's DISK_ID and
    /// the device, and how long it held the hot-plug lock. The caller has journaled the attachment
    /// (<see cref="CloudTransaction.AttachAsync"/>).
    /// </summary>
    internal async Task<(int DiskId, string Device, TimeSpan HotplugHeld)> AttachToProxyAsync(int imageId, long sizeBytes, bool readOnly, CancellationToken ct)
    {
        using (var hold = await _hotplug.AcquireAsync(HotplugKind.Attach, ct).ConfigureAwait(false))
        {
            var proxy = await _hotplugWaiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct).ConfigureAwait(false);
            var target = FreeScsiTarget(proxy);
            var before = locator.Snapshot();
            var disk = new List<KeyValuePair<string, object>> { new("IMAGE_ID", imageId), new("TARGET", target) };
            if (readOnly) disk.Add(new("READONLY", "YES"));
            await client.VmAttachAsync(options.ProxyVmId, new OneTemplate().AddVector("DISK", disk), ct).ConfigureAwait(false);
            proxy = await _hotplugWaiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct, new("attach")).ConfigureAwait(false);
            var attached = proxy.Disks.FirstOrDefault(d => d.ImageId == imageId)
                ?? throw new JobFailedException($"Attaching image {imageId} to the proxy VM {options.ProxyVmId} failed{Why(proxy)}.");
            var device = await locator.LocateAsync(new AttachedDisk(imageId, attached.Target, attached.Serial, sizeBytes), before, options.DeviceTimeout, ct).ConfigureAwait(false);
            logger.LogInformation("Image {Image} attached to the proxy as disk {Disk} ({Target}), device {Device}", imageId, attached.DiskId, attached.Target, device);
            return (attached.DiskId, device, hold.Elapsed);
        }
    }

    /// <summary>sd letters a..z not used by the proxy's disks: the letter index is the SCSI target (docs/opennebula.md, "Device discovery").</summary>
    private static string FreeScsiTarget(VirtualMachine proxy)
    {
        var used = proxy.Disks.Select(d => d.Target).Append(proxy.Template.Element("CONTEXT")?.Element("TARGET")?.Value).OfType<string>().ToHashSet();
        for (var c = 'a'; c <= 'z'; c++)
            if (!used.Contains($"sd{c}")) return $"sd{c}";
        throw new JobFailedException("The proxy VM has no free sd target (26 SCSI disks attached): detach leftovers (proxybackup cleanup).");
    }

    /// <summary>
    /// Detaches the proxy's disk that holds the image; a detach the guest refuses (device still
    /// held) is retried. The hot-plug lock is held for each attempt, not for the pause between
    /// attempts: another job's attach goes on meanwhile (docs/architecture.md, "What is serialised").
    /// Returns how long it held the lock.
    /// </summary>
    /// <param name="proxyVmId">The proxy VM the image is attached to: this one, or (a cleanup) the VM of a proxy sharing the catalog that is gone.</param>
    public async Task<TimeSpan> DetachFromProxyAsync(int imageId, CancellationToken ct, int? proxyVmId = null)
    {
        var proxyId = proxyVmId ?? options.ProxyVmId;
        var held = TimeSpan.Zero;
        for (var attempt = 1; ; attempt++)
        {
            VirtualMachine proxy;
            using (var hold = await _hotplug.AcquireAsync(HotplugKind.Detach, ct).ConfigureAwait(false))
            {
                proxy = await _hotplugWaiter.VmSettledAsync(proxyId, options.OperationTimeout, ct).ConfigureAwait(false);
                var disk = proxy.Disks.FirstOrDefault(d => d.ImageId == imageId);
                if (disk is null) return held + hold.Elapsed;
                await client.VmDetachAsync(proxyId, disk.DiskId, ct).ConfigureAwait(false);
                proxy = await _hotplugWaiter.VmSettledAsync(proxyId, options.OperationTimeout, ct, new("detach")).ConfigureAwait(false);
                if (proxy.Disks.All(d => d.ImageId != imageId))
                {
                    if (proxyId == options.ProxyVmId) logger.LogInformation("Image {Image} detached from the proxy", imageId);
                    else logger.LogInformation("Image {Image} detached from proxy VM {Proxy}, whose appliance is gone", imageId, proxyId);
                    return held + hold.Elapsed;
                }
                held += hold.Elapsed;
            }
            if (attempt >= options.DetachAttempts)
                throw new JobFailedException($"Image {imageId} could not be detached from the proxy VM {proxyId} after {attempt} attempts{Why(proxy)}.");
            logger.LogWarning("Detach of image {Image} refused (attempt {Attempt}){Why}; retrying", imageId, attempt, Why(proxy));
            await Task.Delay(options.DetachRetryDelay * Math.Pow(2, attempt - 1), ct).ConfigureAwait(false);
        }
    }

    /// <summary>USER_TEMPLATE/ERROR is never cleared by a later success: shown as a hint, never used to judge.</summary>
    internal static string Why(VirtualMachine vm) => vm.LastError is { Length: > 0 } e ? $" (last OpenNebula error: {e})" : "";
}

/// <summary>A job could not do its work; the message says what happened and, where it can, what to do.</summary>
public sealed class JobFailedException(string message, Exception? inner = null) : UserFacingException(message, inner);
