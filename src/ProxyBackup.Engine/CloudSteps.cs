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

    /// <summary>A creating request may still be in flight this long after its journal entry (a lost answer, a killed process).</summary>
    public static readonly TimeSpan InFlightGrace = TimeSpan.FromMinutes(15);

    public OneClient Client => client;
    public ICloudJournal Journal => journal;
    public OneWaiter Waiter => _waiter;
    public EngineOptions Options => options;

    /// <summary>
    /// Runs the call that creates a journaled object. A refusal from OpenNebula means nothing was
    /// created: the entry goes. A timeout or a lost answer may have created it: the entry stays for
    /// the cleanup pass, which finds the object by its name. A cancellation waits for the answer,
    /// so that the job's own cleanup knows the object by its ID and removes it at once.
    /// </summary>
    internal async Task<int> CreateAsync(long entry, Func<CancellationToken, Task<int>> call, CancellationToken ct)
    {
        if (ct.IsCancellationRequested)
        {
            journal.Remove(entry);
            ct.ThrowIfCancellationRequested();
        }
        int id;
        try
        {
            // Not interrupted by a cancellation (the client's call timeout bounds it): an aborted
            // request may or may not have created the object, a finished one names it.
            id = await call(CancellationToken.None).ConfigureAwait(false);
        }
        catch (OneException)
        {
            journal.Remove(entry);
            throw;
        }
        journal.SetObjectId(entry, id);
        ct.ThrowIfCancellationRequested();
        return id;
    }

    public async Task<int> CreateSnapshotAsync(string jobId, int vmId, int diskId, CancellationToken ct)
    {
        var name = $"{options.NamePrefix}-{jobId}-d{diskId}";
        var entry = journal.Record(jobId, CloudObjectKind.DiskSnapshot, vmId, diskId, name);
        var snapId = await CreateAsync(entry, c => client.VmDiskSnapshotCreateAsync(vmId, diskId, name, c), ct).ConfigureAwait(false);
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.SnapshotsOf(diskId).All(s => s.Id != snapId))
        {
            journal.Remove(entry);
            throw new JobFailedException($"OpenNebula accepted the snapshot of disk {diskId} of VM {vmId} but did not create it{Why(vm)}.");
        }
        logger.LogInformation("VM {Vm} disk {Disk}: snapshot {Snap} taken", vmId, diskId, snapId);
        return snapId;
    }

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
            logger.LogWarning("VM {Vm} disk {Disk}: snapshot {Snap} kept on the cloud as {Name}: {Why}", vmId, diskId, snapId, kept, why);
            return $"snapshot {snapId} of disk {diskId} stays on the cloud as '{kept}': {why}. Later backups of this disk take their snapshot on top of it and delete theirs";
        }
        await DeleteSnapshotAsync(vmId, diskId, snapId, ct).ConfigureAwait(false);
        return null;
    }

    /// <summary>The name of the one snapshot per disk that OpenNebula does not let the appliance delete.</summary>
    public string KeptSnapshotName(int diskId) => $"{options.NamePrefix}-kept-d{diskId}";

    /// <summary>Deletes a snapshot the caller has seen on a settled VM, and checks it is gone.</summary>
    public async Task DeleteSnapshotAsync(int vmId, int diskId, int snapId, CancellationToken ct)
    {
        await client.VmDiskSnapshotDeleteAsync(vmId, diskId, snapId, ct).ConfigureAwait(false);
        var vm = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.SnapshotsOf(diskId).Any(s => s.Id == snapId))
            throw new JobFailedException($"Snapshot {snapId} of disk {diskId} of VM {vmId} could not be deleted{Why(vm)}.");
    }

    /// <summary>
    /// Saves a snapshot of a disk of <paramref name="vm"/> (the document the job read at its start)
    /// as a new image and waits until it is READY.
    /// </summary>
    public async Task<int> SaveAsAsync(string jobId, VirtualMachine vm, VmDisk disk, int snapId, CancellationToken ct)
    {
        var (vmId, diskId) = (vm.Id, disk.DiskId);
        var name = $"{options.NamePrefix}-{jobId}-vm{vmId}-d{diskId}";
        // A failed save-as leaves the image's ERROR empty and its cause on the VM; an ERROR already
        // there when the job read the VM is an older failure's (docs/opennebula.md, "Save-as").
        var errorBefore = vm.LastError;
        var entry = journal.Record(jobId, CloudObjectKind.Image, vmId, diskId, name);
        var imageId = await CreateAsync(entry, c => client.VmDiskSaveAsAsync(vmId, diskId, name, "", snapId, c), ct).ConfigureAwait(false);
        try
        {
            await _waiter.ImageReadyAsync(imageId, options.CopyTimeoutFor(disk.SizeMb << 20), ct).ConfigureAwait(false);
        }
        catch (OneOperationFailedException e)
        {
            var after = await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
            if (after.LastError is not { Length: > 0 } cause || cause == errorBefore) throw;
            throw new JobFailedException($"{e.Message.TrimEnd('.')}: {cause}", e);
        }
        await _waiter.VmSettledAsync(vmId, options.OperationTimeout, ct).ConfigureAwait(false);
        return imageId;
    }

    /// <summary>Allocates an empty persistent DATABLOCK (a restore target) and waits until it is READY.</summary>
    public async Task<int> AllocateImageAsync(string jobId, int vmId, int diskId, string name, long sizeBytes, int datastoreId, string devPrefix, CancellationToken ct)
    {
        var entry = journal.Record(jobId, CloudObjectKind.Image, vmId, diskId, name);
        var template = new OneTemplate().Set("NAME", name).Set("TYPE", "DATABLOCK").Set("SIZE", (sizeBytes + (1 << 20) - 1) >> 20)
            .Set("FORMAT", "raw").Set("PERSISTENT", "YES").Set("DEV_PREFIX", devPrefix)
            .Set("DESCRIPTION", $"ProxyBackup restore of VM {vmId} disk {diskId}");
        var imageId = await CreateAsync(entry, c => client.ImageAllocateAsync(template, datastoreId, c), ct).ConfigureAwait(false);
        await _waiter.ImageReadyAsync(imageId, options.CopyTimeoutFor(sizeBytes), ct).ConfigureAwait(false);
        return imageId;
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
        await _waiter.ImageGoneAsync(imageId, options.OperationTimeout, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Attaches an image to the proxy with an sd TARGET chosen here (so that its SCSI target is
    /// known), waits for the hot-plug, and finds the block device. Returns the proxy's DISK_ID and the device.
    /// </summary>
    public async Task<(int DiskId, string Device)> AttachToProxyAsync(string jobId, int imageId, string imageName, long sizeBytes, bool readOnly, CancellationToken ct)
    {
        using (await _hotplug.AcquireAsync(ct).ConfigureAwait(false))
        {
            var proxy = await _waiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct).ConfigureAwait(false);
            var target = FreeScsiTarget(proxy);
            var before = locator.Snapshot();
            var entry = journal.Record(jobId, CloudObjectKind.Attachment, options.ProxyVmId, -1, imageName);
            journal.SetObjectId(entry, imageId);
            var disk = new List<KeyValuePair<string, object>> { new("IMAGE_ID", imageId), new("TARGET", target) };
            if (readOnly) disk.Add(new("READONLY", "YES"));
            await client.VmAttachAsync(options.ProxyVmId, new OneTemplate().AddVector("DISK", disk), ct).ConfigureAwait(false);
            proxy = await _waiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct).ConfigureAwait(false);
            var attached = proxy.Disks.FirstOrDefault(d => d.ImageId == imageId)
                ?? throw new JobFailedException($"Attaching image {imageId} to the proxy VM {options.ProxyVmId} failed{Why(proxy)}.");
            var device = await locator.LocateAsync(new AttachedDisk(imageId, attached.Target, attached.Serial, sizeBytes), before, options.DeviceTimeout, ct).ConfigureAwait(false);
            logger.LogInformation("Image {Image} attached to the proxy as disk {Disk} ({Target}), device {Device}", imageId, attached.DiskId, attached.Target, device);
            return (attached.DiskId, device);
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

    /// <summary>Detaches the proxy's disk that holds the image; a detach the guest refuses (device still held) is retried.</summary>
    public async Task DetachFromProxyAsync(int imageId, CancellationToken ct)
    {
        using (await _hotplug.AcquireAsync(ct).ConfigureAwait(false))
        {
            for (var attempt = 1; ; attempt++)
            {
                var proxy = await _waiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct).ConfigureAwait(false);
                var disk = proxy.Disks.FirstOrDefault(d => d.ImageId == imageId);
                if (disk is null) return;
                await client.VmDetachAsync(options.ProxyVmId, disk.DiskId, ct).ConfigureAwait(false);
                proxy = await _waiter.VmSettledAsync(options.ProxyVmId, options.OperationTimeout, ct).ConfigureAwait(false);
                if (proxy.Disks.All(d => d.ImageId != imageId))
                {
                    logger.LogInformation("Image {Image} detached from the proxy", imageId);
                    return;
                }
                if (attempt >= options.DetachAttempts)
                    throw new JobFailedException($"Image {imageId} could not be detached from the proxy VM {options.ProxyVmId} after {attempt} attempts{Why(proxy)}.");
                logger.LogWarning("Detach of image {Image} refused (attempt {Attempt}){Why}; retrying", imageId, attempt, Why(proxy));
                await Task.Delay(options.DetachRetryDelay * Math.Pow(2, attempt - 1), ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>USER_TEMPLATE/ERROR is never cleared by a later success: shown as a hint, never used to judge.</summary>
    private static string Why(VirtualMachine vm) => vm.LastError is { Length: > 0 } e ? $" (last OpenNebula error: {e})" : "";
}

/// <summary>A job could not do its work; the message says what happened and, where it can, what to do.</summary>
public sealed class JobFailedException(string message, Exception? inner = null) : UserFacingException(message, inner);
