using System.Globalization;
using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;

namespace ProxyBackup.Engine;

/// <summary>What an in-place restore replaces and how it stops the VM (docs/operations.md, "In-place restore").</summary>
public sealed record InPlaceOptions
{
    /// <summary>The DISK_IDs to restore; null: every disk of the restore point that the VM still has.</summary>
    public IReadOnlySet<int>? Disks { get; init; }

    /// <summary>Power a running VM off hard (the guest is not asked) instead of by ACPI.</summary>
    public bool HardPowerOff { get; init; }

    /// <summary>Where a non-persistent disk's new image is made.</summary>
    public int ImageDatastoreId { get; init; } = 1;

    /// <summary>Read each written disk back and compare it with the restore point before it is attached back.</summary>
    public bool VerifyDisks { get; init; }
}

public sealed partial class RestoreJob
{
    /// <summary>
    /// Puts a restore point's content back into the VM it came from (docs/opennebula.md, "In-place
    /// restore"): the VM powered off, each chosen disk detached, its content written (a persistent
    /// disk into its own image; a non-persistent one into a new image, since its running copy is gone
    /// with the detach), the disk attached back with its attributes and TARGET, and the VM returned
    /// to RUNNING when it ran. Every detached disk stays journaled until it is attached back.
    /// </summary>
    public async Task<RestoreResult> RestoreInPlaceAsync(RestorePoint point, InPlaceOptions options, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        if (!int.TryParse(point.Tags.GetValueOrDefault("vm_id"), NumberStyles.None, CultureInfo.InvariantCulture, out var vmId))
            throw new JobFailedException($"Restore point {point.Source}/{point.Id} does not name its VM (tag vm_id): restore it as a new VM.");
        if (vmId == steps.Options.ProxyVmId) throw new JobFailedException($"VM {vmId} is the proxy VM itself: it cannot restore itself in place.");
        return await Guarded(point, async cloud =>
        {
            using var held = guard.Acquire(vmId, cloud.JobId, "in-place restore");
            VirtualMachine vm;
            try { vm = await cloud.ReadVmAsync(vmId, ct).ConfigureAwait(false); }
            catch (OneNotFoundException) { throw new JobFailedException($"VM {vmId} no longer exists: restore it as a new VM (vm restore without --in-place)."); }
            var wasRunning = vm is { State: VmState.Active, LcmState: LcmState.Running };
            if (!wasRunning && vm.State != VmState.Poweroff)
                throw new JobFailedException($"VM {vmId} ({vm.Name}) is {vm.StateName}: an in-place restore needs it RUNNING or POWEROFF.");
            var plan = await PlanInPlaceAsync(cloud, point, vm, options.Disks, ct).ConfigureAwait(false);
            await CheckTargetsAsync(cloud, point, plan.Where(d => !d.Persistent).Select(d => d.DiskId).ToHashSet(), options.ImageDatastoreId, null, ct).ConfigureAwait(false);
            jobs.Log(cloud.JobId, "info", $"in-place restore of VM {vmId} ({vm.Name}), disk(s) {string.Join(", ", plan.Select(d => d.DiskId))}, from {point.Id}");
            if (wasRunning) await steps.PowerOffAsync(vmId, options.HardPowerOff, ct).ConfigureAwait(false);
            var images = new Dictionary<int, int>();
            var made = new Dictionary<int, JobImage>();
            var warnings = new List<string>();
            foreach (var disk in plan)
            {
                ct.ThrowIfCancellationRequested();
                var diskName = disk.DiskId.ToString(CultureInfo.InvariantCulture);
                var size = point.Disk(diskName).Size;
                var detached = await cloud.DetachFromVmAsync(vm, disk, ct).ConfigureAwait(false);
                // A persistent disk is its image: written where it is. A non-persistent disk's copy went with
                // the detach: its content goes into a new image, which the disk then uses.
                var target = disk.Persistent
                    ? new JobImage(JournalEntryOfNone, disk.ImageId!.Value, disk.Image ?? $"image {disk.ImageId}", size)
                    : await cloud.AllocateImageAsync(vmId, disk.DiskId, $"{steps.Options.NamePrefix}-restore-{vmId}-d{disk.DiskId}-{cloud.JobId}", size, options.ImageDatastoreId, disk.DevPrefix ?? "vd", ct).ConfigureAwait(false);
                var attachment = await cloud.AttachAsync(target, readOnly: false, ct).ConfigureAwait(false);
                try
                {
                    await repository.RestoreDiskAsync(point, diskName, attachment.Device, new RestoreOptions { TargetIsZeroed = !disk.Persistent }, progress, ct).ConfigureAwait(false);
                    if (options.VerifyDisks) await VerifyWrittenAsync(cloud, point, disk.DiskId, target.Id, attachment.Device, progress, ct).ConfigureAwait(false);
                }
                finally
                {
                    await cloud.DetachAsync(attachment).ConfigureAwait(false);
                }
                if (!disk.Persistent)
                {
                    await cloud.FinishRestoredImageAsync(target, persistent: false, ct).ConfigureAwait(false);
                    cloud.Holds(detached, target);
                }
                var attached = await cloud.AttachBackAsync(detached, target.Id, ct).ConfigureAwait(false);
                if (!disk.Persistent)
                {
                    cloud.HandOver([target], $"VM {vmId}");
                    made[disk.DiskId] = target;
                }
                images[attached.DiskId] = target.Id;
                if (attached.DiskId != disk.DiskId)
                    warnings.Add($"disk {disk.DiskId} ({disk.Target}) is DISK_ID {attached.DiskId} now (OpenNebula numbers an attached disk anew); its next backup reads it whole");
                logger.LogInformation("In-place restore {JobId}: disk {Disk} of VM {VmId} restored from {Point}", cloud.JobId, disk.DiskId, vmId, point.Id);
            }
            if (vm.Template.Element("OS")?.Element("BOOT")?.Value is { Length: > 0 } boot && plan.Any(d => boot.Contains($"disk{d.DiskId}", StringComparison.Ordinal)))
                warnings.Add($"the VM's boot order ({boot}) names a disk whose DISK_ID changed: check it (onevm updateconf {vmId}) before the next boot");
            // New images (of non-persistent disks) are named after the VM and given to its owner; every warning is logged there.
            await NameAndOwnAsync(cloud, vm, DefaultName(vm, point), made, null, null, originalOwner: true, warnings, ct).ConfigureAwait(false);
            if (wasRunning) await steps.ResumeAsync(vmId, ct).ConfigureAwait(false);
            return new RestoreResult(cloud.JobId, vmId, images, null, warnings);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>A handle for an image the job did not make (a persistent disk's own): it has no journal entry, and the job never deletes it.</summary>
    private const long JournalEntryOfNone = 0;

    /// <summary>The disks to restore, each checked against what OpenNebula allows; every refusal at once, before the VM is touched.</summary>
    private async Task<List<VmDisk>> PlanInPlaceAsync(CloudTransaction cloud, RestorePoint point, VirtualMachine vm, IReadOnlySet<int>? only, CancellationToken ct)
    {
        var inPoint = point.Disks.Select(d => int.Parse(d.Disk, CultureInfo.InvariantCulture)).ToHashSet();
        var wanted = only ?? inPoint.Where(id => vm.Disk(id) is not null).ToHashSet();
        var problems = new List<string>();
        var plan = new List<VmDisk>();
        foreach (var id in wanted.Order())
        {
            var disk = vm.Disk(id);
            if (!inPoint.Contains(id)) { problems.Add($"restore point {point.Id} has no disk {id}"); continue; }
            if (disk is null) { problems.Add($"VM {vm.Id} has no disk {id} now"); continue; }
            if (disk.IsVolatile || disk.IsCdrom) { problems.Add($"disk {id} is {(disk.IsVolatile ? "volatile" : "a CD-ROM")}: nothing to restore into"); continue; }
            var pointMb = (point.Disk(id.ToString(CultureInfo.InvariantCulture)).Size + (1 << 20) - 1) >> 20;
            if (disk.SizeMb != pointMb) { problems.Add($"disk {id} is {disk.SizeMb} MB now and {pointMb} MB in the restore point: restore it as a new VM or image"); continue; }
            if (vm.SnapshotsOf(id).Count > 0) { problems.Add($"disk {id} has disk snapshots, which a detach would lose or keep out of step: delete them first"); continue; }
            if (disk.Persistent && (await cloud.ReadImageAsync(disk.ImageId!.Value, ct).ConfigureAwait(false)).Vms.Any(v => v != vm.Id))
            {
                problems.Add($"disk {id}'s persistent image {disk.ImageId} is used by another VM too");
                continue;
            }
            plan.Add(disk);
        }
        if (plan.Count == 0 && problems.Count == 0) problems.Add($"VM {vm.Id} has none of the restore point's disks");
        if (problems.Count > 0) throw new JobFailedException($"In-place restore of VM {vm.Id} ({vm.Name}) refused, nothing was changed: {string.Join("; ", problems)}.");
        return plan;
    }
}
