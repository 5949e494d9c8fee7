using System.Globalization;
using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>A disk snapshot a job took, with the journal entry that records it.</summary>
public sealed record JobSnapshot(long Entry, int VmId, int DiskId, int Id);

/// <summary>An image a job saved or allocated, with the journal entry that records it.</summary>
public sealed record JobImage(long Entry, int Id, string Name, long SizeBytes);

/// <summary>A job's image attached to the proxy: the proxy's DISK_ID and the block device it appeared as.</summary>
public sealed record JobAttachment(long Entry, JobImage Image, int ProxyDiskId, string Device);

/// <summary>A disk an in-place restore detached from its VM, with the journal entry that attaches it back if the job dies.</summary>
public sealed record JobDetachedDisk(long Entry, int VmId, VmDisk Disk);

/// <summary>A VM the job suspended, with its journal entry and when the suspend was asked for.</summary>
public sealed record JobSuspension(long Entry, int VmId, long Started);

/// <summary>A template a restore allocated.</summary>
public sealed record JobTemplate(long Entry, int Id, string Name);

/// <summary>
/// One job's objects on the cloud (docs/architecture.md, "Every cloud object has an owner"). Every
/// create is journaled before its call and completed with the id it returns; every delete forgets
/// exactly the entry of the object it removed (a handle carries its entry, so two disks' snapshots
/// with the same id can never be mistaken for each other); objects that become part of a restored
/// VM are handed over; on failure <see cref="CompensateAsync"/> removes what is still recorded.
/// Jobs reach the cloud only through this type.
/// </summary>
public sealed class CloudTransaction(string jobId, CloudSteps steps, CloudCleaner cleaner, ILogger logger)
{
    private readonly ICloudJournal _journal = steps.Journal;
    private readonly OneClient _client = steps.Client;
    private EngineOptions Options => steps.Options;

    public string JobId => jobId;

    // How long this job's attaches and detaches (one after another) held the proxy's hot-plug lock.
    private TimeSpan _hotplugHeld;

    /// <summary>The job log's line for the time this job held the proxy's hot-plug lock, the night's bottleneck (scripts/bench-cloud reads it).</summary>
    public string HotplugSummary => $"proxy hot-plug lock held {_hotplugHeld.TotalSeconds.ToString("0.000", CultureInfo.InvariantCulture)} s";

    public Task<VirtualMachine> ReadVmAsync(int vmId, CancellationToken ct) => _client.VmInfoAsync(vmId, ct);

    public Task<OneImage> ReadImageAsync(int imageId, CancellationToken ct) => _client.ImageInfoAsync(imageId, ct);

    public Task<OneHost> ReadHostAsync(int hostId, CancellationToken ct) => _client.HostInfoAsync(hostId, ct);

    public Task<IReadOnlyList<OneDatastore>> ReadDatastoresAsync(CancellationToken ct) => _client.DatastorePoolAsync(ct);

    /// <summary>
    /// Runs the call that creates a journaled object. A refusal from OpenNebula means nothing was
    /// created: the entry goes. A timeout or a lost answer may have created it: the entry stays for
    /// the cleanup pass, which finds the object by its name. A cancellation waits for the answer,
    /// so that the job's own compensation knows the object by its ID and removes it at once.
    /// </summary>
    private async Task<int> CreateAsync(long entry, Func<CancellationToken, Task<int>> call, CancellationToken ct)
    {
        if (ct.IsCancellationRequested)
        {
            _journal.Remove(entry);
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
            _journal.Remove(entry);
            throw;
        }
        _journal.SetObjectId(entry, id);
        ct.ThrowIfCancellationRequested();
        return id;
    }

    public async Task<JobSnapshot> TakeSnapshotAsync(int vmId, int diskId, CancellationToken ct)
    {
        var name = $"{Options.NamePrefix}-{jobId}-d{diskId}";
        var entry = _journal.Record(jobId, CloudObjectKind.DiskSnapshot, vmId, diskId, name);
        var snapId = await CreateAsync(entry, c => _client.VmDiskSnapshotCreateAsync(vmId, diskId, name, c), ct).ConfigureAwait(false);
        var vm = await steps.Waiter.VmSettledAsync(vmId, Options.OperationTimeout, ct, new("snapshot")).ConfigureAwait(false);
        if (vm.SnapshotsOf(diskId).All(s => s.Id != snapId))
        {
            _journal.Remove(entry);
            throw new JobFailedException($"OpenNebula accepted the snapshot of disk {diskId} of VM {vmId} but did not create it{CloudSteps.Why(vm)}.");
        }
        logger.LogInformation("VM {VmId} disk {Disk}: snapshot {Snap} taken", vmId, diskId, snapId);
        return new JobSnapshot(entry, vmId, diskId, snapId);
    }

    /// <summary>
    /// Suspends a running VM for its snapshot set (docs/operations.md, "Consistency of the snapshot
    /// set"), journaled first: a job that dies before it resumes the VM leaves an entry the cleanup
    /// pass resumes it by.
    /// </summary>
    public async Task<JobSuspension> SuspendAsync(int vmId, CancellationToken ct)
    {
        var entry = _journal.Record(jobId, CloudObjectKind.SuspendedVm, vmId, -1, $"{Options.NamePrefix}-{jobId}-suspend");
        var started = Options.Time.GetTimestamp();
        try
        {
            await _client.VmActionAsync("suspend", vmId, ct).ConfigureAwait(false);
        }
        catch (OneException)
        {
            _journal.Remove(entry);
            throw;
        }
        var vm = await steps.Waiter.VmSettledAsync(vmId, Options.OperationTimeout, ct, new("suspend")).ConfigureAwait(false);
        if (vm.State != VmState.Suspended)
        {
            _journal.Remove(entry);
            throw new JobFailedException($"VM {vmId} did not suspend for its snapshot set (it is {vm.StateName}){CloudSteps.Why(vm)}.");
        }
        logger.LogInformation("VM {VmId} suspended for its snapshot set", vmId);
        return new JobSuspension(entry, vmId, started);
    }

    /// <summary>Resumes the VM the job suspended and returns how long it was paused; on failure the entry stays for the cleanup pass.</summary>
    public async Task<TimeSpan> ResumeAsync(JobSuspension suspension, CancellationToken ct)
    {
        await steps.ResumeAsync(suspension.VmId, ct).ConfigureAwait(false);
        _journal.Remove(suspension.Entry);
        var paused = Options.Time.GetElapsedTime(suspension.Started);
        logger.LogInformation("VM {VmId} resumed after {Seconds:0.0} s", suspension.VmId, paused.TotalSeconds);
        return paused;
    }

    /// <summary>
    /// Removes the job's snapshot (or keeps and renames the one OpenNebula will not delete) and
    /// forgets its entry. Returns what stays on the cloud and why, or null.
    /// </summary>
    public async Task<string?> RemoveSnapshotAsync(JobSnapshot snapshot, CancellationToken ct)
    {
        var kept = await steps.RemoveJobSnapshotAsync(snapshot.VmId, snapshot.DiskId, snapshot.Id, ct).ConfigureAwait(false);
        _journal.Remove(snapshot.Entry);
        return kept;
    }

    /// <summary>
    /// Saves a snapshot of a disk of <paramref name="vm"/> (the document the job read at its start)
    /// as a new image, waits until it is READY and makes it persistent, so that attaching it to the
    /// proxy uses it in place instead of copying it again (docs/opennebula.md, "Persistency on attach").
    /// </summary>
    public async Task<JobImage> SaveAsAsync(VirtualMachine vm, VmDisk disk, JobSnapshot snapshot, CancellationToken ct)
    {
        var (vmId, diskId) = (vm.Id, disk.DiskId);
        var name = $"{Options.NamePrefix}-{jobId}-vm{vmId}-d{diskId}";
        // A failed save-as leaves the image's ERROR empty and its cause on the VM; an ERROR already
        // there when the job read the VM is an older failure's (docs/opennebula.md, "Save-as").
        var errorBefore = vm.LastError;
        var entry = _journal.Record(jobId, CloudObjectKind.Image, vmId, diskId, name);
        var imageId = await CreateAsync(entry, c => _client.VmDiskSaveAsAsync(vmId, diskId, name, "", snapshot.Id, c), ct).ConfigureAwait(false);
        try
        {
            await steps.Waiter.ImageReadyAsync(imageId, Options.CopyTimeoutFor(disk.SizeMb << 20), ct, new("save-as", disk.SizeMb << 20)).ConfigureAwait(false);
        }
        catch (OneOperationFailedException e)
        {
            var after = await steps.Waiter.VmSettledAsync(vmId, Options.OperationTimeout, ct).ConfigureAwait(false);
            if (after.LastError is not { Length: > 0 } cause || cause == errorBefore) throw;
            throw new JobFailedException($"{e.Message.TrimEnd('.')}: {cause}", e);
        }
        await steps.Waiter.VmSettledAsync(vmId, Options.OperationTimeout, ct).ConfigureAwait(false);
        await _client.ImagePersistentAsync(imageId, true, ct).ConfigureAwait(false);
        // The saved image has the name the job gave it and the disk's size: no one.image.info needed.
        return new JobImage(entry, imageId, name, disk.SizeMb << 20);
    }

    /// <summary>Allocates an empty persistent DATABLOCK (a restore target) and waits until it is READY.</summary>
    public async Task<JobImage> AllocateImageAsync(int vmId, int diskId, string name, long sizeBytes, int datastoreId, string devPrefix, CancellationToken ct)
    {
        var entry = _journal.Record(jobId, CloudObjectKind.Image, vmId, diskId, name);
        var sizeMb = (sizeBytes + (1 << 20) - 1) >> 20;
        var template = new OneTemplate().Set("NAME", name).Set("TYPE", "DATABLOCK").Set("SIZE", sizeMb)
            .Set("FORMAT", "raw").Set("PERSISTENT", "YES").Set("DEV_PREFIX", devPrefix)
            .Set("DESCRIPTION", $"ProxyBackup restore of VM {vmId} disk {diskId}");
        var imageId = await CreateAsync(entry, c => _client.ImageAllocateAsync(template, datastoreId, c), ct).ConfigureAwait(false);
        await steps.Waiter.ImageReadyAsync(imageId, Options.CopyTimeoutFor(sizeBytes), ct, new("allocate", sizeBytes)).ConfigureAwait(false);
        return new JobImage(entry, imageId, name, sizeMb << 20);
    }

    /// <summary>Waits until a written image is READY again and sets whether it stays persistent (the restored disk's own setting).</summary>
    public async Task FinishRestoredImageAsync(JobImage image, bool persistent, CancellationToken ct)
    {
        await steps.Waiter.ImageReadyAsync(image.Id, Options.OperationTimeout, ct).ConfigureAwait(false);
        if (!persistent) await _client.ImagePersistentAsync(image.Id, false, ct).ConfigureAwait(false);
    }

    /// <summary>Deletes the job's image and forgets its entry.</summary>
    public async Task DeleteImageAsync(JobImage image, CancellationToken ct)
    {
        await steps.DeleteImageAsync(image.Id, ct).ConfigureAwait(false);
        _journal.Remove(image.Entry);
    }

    /// <summary>Attaches the job's image to the proxy and finds its block device; the attachment is journaled before the call.</summary>
    public async Task<JobAttachment> AttachAsync(JobImage image, bool readOnly, CancellationToken ct)
    {
        var entry = _journal.Record(jobId, CloudObjectKind.Attachment, Options.ProxyVmId, -1, image.Name);
        _journal.SetObjectId(entry, image.Id);
        var (diskId, device, held) = await steps.AttachToProxyAsync(image.Id, image.SizeBytes, readOnly, ct).ConfigureAwait(false);
        _hotplugHeld += held;
        return new JobAttachment(entry, image, diskId, device);
    }

    /// <summary>Detaches the job's image from the proxy and forgets the attachment. Not cancellable: a device half given up is worse than a late one.</summary>
    public async Task DetachAsync(JobAttachment attachment)
    {
        _hotplugHeld += await steps.DetachFromProxyAsync(attachment.Image.Id, CancellationToken.None).ConfigureAwait(false);
        _journal.Remove(attachment.Entry);
    }

    public async Task<JobTemplate> AllocateTemplateAsync(OneTemplate template, int savedVmId, CancellationToken ct)
    {
        var name = $"{Options.NamePrefix}-{jobId}-template";
        template.Set("NAME", name);
        var entry = _journal.Record(jobId, CloudObjectKind.Template, savedVmId, -1, name);
        var id = await CreateAsync(entry, c => _client.TemplateAllocateAsync(template, c), ct).ConfigureAwait(false);
        return new JobTemplate(entry, id, name);
    }

    /// <summary>
    /// Creates the VM from the job's template. An answer lost on the way back may hide a VM that
    /// exists: it is found by its name and the template it came from (unique to the job), so the
    /// restore neither fails with a VM running nor makes a second one.
    /// </summary>
    public async Task<int> InstantiateAsync(JobTemplate template, string name, CancellationToken ct)
    {
        try
        {
            return await _client.TemplateInstantiateAsync(template.Id, name, hold: false, extra: null, ct: CancellationToken.None).ConfigureAwait(false);
        }
        catch (ProxyBackup.XmlRpc.XmlRpcTransportException e) when (e.RequestMayHaveBeenProcessed)
        {
            foreach (var candidate in (await _client.VmPoolAsync(ct: ct).ConfigureAwait(false)).Where(v => v.Name == name))
            {
                var vm = await _client.VmInfoAsync(candidate.Id, ct).ConfigureAwait(false);
                if (vm.Template.Element("TEMPLATE_ID")?.Value == template.Id.ToString(CultureInfo.InvariantCulture))
                {
                    logger.LogWarning("The answer to instantiating template {Template} was lost ({Error}); the VM it created is {VmId}", template.Id, e.Message, vm.Id);
                    return vm.Id;
                }
            }
            throw;
        }
    }

    /// <summary>
    /// Detaches a disk of a powered-off VM for an in-place restore (docs/operations.md, "In-place
    /// restore"), journaled first with the DISK and its image: a job that dies before it attaches a
    /// disk back leaves an entry by which the cleanup pass attaches it back.
    /// </summary>
    public async Task<JobDetachedDisk> DetachFromVmAsync(VirtualMachine vm, VmDisk disk, CancellationToken ct)
    {
        var entry = _journal.Record(jobId, CloudObjectKind.DetachedDisk, vm.Id, disk.DiskId, disk.Xml.ToString(System.Xml.Linq.SaveOptions.DisableFormatting));
        _journal.SetObjectId(entry, disk.ImageId!.Value);
        await steps.DetachFromVmAsync(vm.Id, disk.DiskId, ct).ConfigureAwait(false);
        return new JobDetachedDisk(entry, vm.Id, disk);
    }

    /// <summary>From now on the detached disk's content is in this image (a non-persistent disk's new image, once written).</summary>
    public void Holds(JobDetachedDisk detached, JobImage image) => _journal.SetObjectId(detached.Entry, image.Id);

    /// <summary>Attaches the image back in the detached disk's place (its attributes and TARGET) and forgets the entry.</summary>
    public async Task<VmDisk> AttachBackAsync(JobDetachedDisk detached, int imageId, CancellationToken ct)
    {
        var attached = await steps.AttachToVmAsync(detached.VmId, RestoreTemplate.AttachDisk(detached.Disk.Xml, imageId), imageId, ct).ConfigureAwait(false);
        _journal.Remove(detached.Entry);
        return attached;
    }

    /// <summary>
    /// Creates a drill's sandbox VM, journaled first under its unique name (a lost answer is found by
    /// it): the VM stays the job's, removed with its images by the job's compensation or a cleanup pass.
    /// </summary>
    public async Task<int> InstantiateSandboxAsync(JobTemplate template, int drilledVmId, string name, CancellationToken ct)
    {
        var entry = _journal.Record(jobId, CloudObjectKind.SandboxVm, drilledVmId, -1, name);
        var id = await CreateAsync(entry, c => InstantiateAsync(template, name, c), ct).ConfigureAwait(false);
        return id;
    }

    /// <summary>Deletes the job's template and forgets its entry; a failure leaves the entry for the cleanup pass.</summary>
    public async Task DeleteTemplateAsync(JobTemplate template, CancellationToken ct)
    {
        try { await _client.TemplateDeleteAsync(template.Id, recursive: false, ct).ConfigureAwait(false); }
        catch (OneNotFoundException) { }
        _journal.Remove(template.Entry);
    }

    /// <summary>The images are no longer the job's to remove: they belong to <paramref name="owner"/> now (the restored VM, the operator).</summary>
    public void HandOver(IEnumerable<JobImage> images, string owner)
    {
        foreach (var image in images)
        {
            _journal.Remove(image.Entry);
            logger.LogInformation("Image {Image} ({Name}) handed over to {Owner}", image.Id, image.Name, owner);
        }
    }

    /// <summary>The template stays for the operator (a template-only restore): its entry leaves the journal.</summary>
    public void HandOver(JobTemplate template, string owner)
    {
        _journal.Remove(template.Entry);
        logger.LogInformation("Template {Template} ({Name}) handed over to {Owner}", template.Id, template.Name, owner);
    }

    /// <summary>Waits for the VM with <see cref="OneWaiter.VmUntilAsync"/>'s contract.</summary>
    public Task<VirtualMachine> WaitForVmAsync(int vmId, string what, Func<VirtualMachine, bool> done, TimeSpan timeout, CancellationToken ct) =>
        steps.Waiter.VmUntilAsync(vmId, what, done, timeout, ct);

    /// <summary>Removes what the job still has recorded (its failure's compensation); what cannot go is left journaled and logged.</summary>
    public Task CompensateAsync(bool cancelled, IJobRecorder jobs) => cleaner.CleanAfterJobAsync(jobId, cancelled, jobs);
}
