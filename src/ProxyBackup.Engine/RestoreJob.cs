using System.Globalization;
using Microsoft.Extensions.Logging;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine;

public sealed record RestoreVmOptions
{
    public required int ImageDatastoreId { get; init; }
    public int? SystemDatastoreId { get; init; }

    /// <summary>The new VM's name (default: the original's with "-restored" and the restore point time).</summary>
    public string? Name { get; init; }
    public NicMode Nics { get; init; } = NicMode.NoIp;

    /// <summary>Restore only these DISK_IDs (the others become empty images); null: all.</summary>
    public IReadOnlySet<int>? Disks { get; init; }
}

public sealed record RestoreResult(string JobId, int? VmId, IReadOnlyDictionary<int, int> Images);

/// <summary>
/// Restore runs the backup road backwards (docs/opennebula.md, "Restore flow"): per disk an empty persistent
/// image attached to the proxy and written, then a VM created from the saved document. Until the
/// job succeeds, every image and template it made is in the journal, and is removed if it fails.
/// </summary>
public sealed class RestoreJob(CloudSteps steps, CloudCleaner cleaner, IJobRecorder jobs, BackupRepository repository, ILogger logger)
{
    public async Task<RestoreResult> RestoreVmAsync(RestorePoint point, RestoreVmOptions options, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        var jobId = JobIds.New("r");
        return await Guarded(jobId, point, async () =>
        {
            var saved = SavedVm(point);
            var images = await RestoreDisksAsync(jobId, point, saved, options.ImageDatastoreId, options.Disks, progress, ct).ConfigureAwait(false);
            var name = options.Name ?? $"{saved.Name}-restored-{point.Time.UtcDateTime:yyyyMMdd'T'HHmmss}";
            var template = RestoreTemplate.Build(saved, images, name, options.Nics, options.SystemDatastoreId);
            var templateName = $"{steps.Options.NamePrefix}-{jobId}-template";
            var entry = steps.Journal.Record(jobId, CloudObjectKind.Template, saved.Id, -1, templateName);
            template.Set("NAME", templateName);
            var templateId = await steps.CreateAsync(entry, c => steps.Client.TemplateAllocateAsync(template, c), ct).ConfigureAwait(false);
            var vmId = await steps.Client.TemplateInstantiateAsync(templateId, name, hold: false, extra: null, ct: ct).ConfigureAwait(false);
            // The images now belong to the new VM: nothing of them is a leftover any more.
            foreach (var e in steps.Journal.Pending(jobId).Where(e => e.Kind == CloudObjectKind.Image)) steps.Journal.Remove(e.Id);
            // The VM exists: a template that cannot be deleted now is a leftover for the cleanup
            // (it stays journaled), not a failed restore that an operator would run again.
            try
            {
                await steps.Client.TemplateDeleteAsync(templateId, recursive: false, ct).ConfigureAwait(false);
                steps.Journal.Remove(entry);
            }
            catch (UserFacingException e)
            {
                jobs.Log(jobId, "warning", $"the temporary template {templateId} could not be deleted ({e.Message}); the next cleanup removes it");
                logger.LogWarning("Restore {Job}: temporary template {Template} left for the cleanup: {Error}", jobId, templateId, e.Message);
            }
            await steps.Waiter.VmRunningAsync(vmId, steps.Options.CopyTimeout, ct).ConfigureAwait(false);
            logger.LogInformation("Restore {Job}: VM {Vm} ({Name}) is RUNNING from restore point {Point}", jobId, vmId, name, point.Id);
            return new RestoreResult(jobId, vmId, images);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>One disk of a restore point as a new image (no VM).</summary>
    public async Task<RestoreResult> RestoreDiskAsImageAsync(RestorePoint point, int diskId, int datastoreId, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        var jobId = JobIds.New("r");
        return await Guarded(jobId, point, async () =>
        {
            var saved = SavedVm(point);
            var images = await RestoreDisksAsync(jobId, point, saved, datastoreId, new HashSet<int> { diskId }, progress, ct, onlyListed: true).ConfigureAwait(false);
            foreach (var e in steps.Journal.Pending(jobId)) steps.Journal.Remove(e.Id);
            return new RestoreResult(jobId, null, images);
        }, ct).ConfigureAwait(false);
    }

    private async Task<RestoreResult> Guarded(string jobId, RestorePoint point, Func<Task<RestoreResult>> work, CancellationToken ct)
    {
        var vmId = int.TryParse(point.Tags.GetValueOrDefault("vm_id"), out var v) ? v : -1;
        jobs.Started(jobId, "restore", vmId);
        jobs.Log(jobId, "info", $"restore of {point.Source}/{point.Id} started");
        try
        {
            var result = await work().ConfigureAwait(false);
            jobs.Finished(jobId, true, point.Disks.Sum(d => d.Size), 0, point.Id, null);
            return result;
        }
        catch (Exception e) when (e is not OperationCanceledException || ct.IsCancellationRequested)
        {
            jobs.Log(jobId, "error", e is OperationCanceledException ? "cancelled" : e.Message);
            jobs.Finished(jobId, false, 0, 0, point.Id, e is OperationCanceledException ? "cancelled" : e.Message);
            logger.LogError("Restore {Job} failed: {Error}; removing what it created", jobId, e.Message);
            await cleaner.CleanAsync(jobId, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    private VirtualMachine SavedVm(RestorePoint point) =>
        VirtualMachine.Parse(OneXml.Parse(System.Text.Encoding.UTF8.GetString(repository.LoadMetadata(point, "vm.xml"))));

    private async Task<Dictionary<int, int>> RestoreDisksAsync(string jobId, RestorePoint point, VirtualMachine saved, int datastoreId,
        IReadOnlySet<int>? only, IProgress<TransferProgress>? progress, CancellationToken ct, bool onlyListed = false)
    {
        var images = new Dictionary<int, int>();
        var excluded = (point.Tags.GetValueOrDefault("disks_excluded") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse).ToHashSet();
        foreach (var disk in saved.Disks.Where(d => !d.IsVolatile && !d.IsCdrom))
        {
            var backedUp = point.Disks.Any(d => d.Disk == disk.DiskId.ToString(CultureInfo.InvariantCulture));
            var wanted = (only is null || only.Contains(disk.DiskId)) && backedUp;
            if (onlyListed && !wanted) continue;
            if (!backedUp && !excluded.Contains(disk.DiskId)) continue;
            ct.ThrowIfCancellationRequested();
            var size = wanted ? point.Disk(disk.DiskId.ToString(CultureInfo.InvariantCulture)).Size : disk.SizeMb << 20;
            var name = $"{steps.Options.NamePrefix}-restore-{saved.Id}-d{disk.DiskId}-{jobId}";
            var imageId = await steps.AllocateImageAsync(jobId, saved.Id, disk.DiskId, name, size, datastoreId, disk.DevPrefix ?? "vd", ct).ConfigureAwait(false);
            images[disk.DiskId] = imageId;
            if (!wanted) continue; // an excluded disk comes back empty
            var (_, device) = await steps.AttachToProxyAsync(jobId, imageId, name, (size + (1 << 20) - 1) >> 20 << 20, readOnly: false, ct).ConfigureAwait(false);
            try
            {
                await repository.RestoreDiskAsync(point, disk.DiskId.ToString(CultureInfo.InvariantCulture), device, new RestoreOptions { TargetIsZeroed = true }, progress, ct).ConfigureAwait(false);
            }
            finally
            {
                await steps.DetachFromProxyAsync(imageId, CancellationToken.None).ConfigureAwait(false);
            }
            foreach (var e in steps.Journal.Pending(jobId).Where(e => e.Kind == CloudObjectKind.Attachment && e.ObjectId == imageId)) steps.Journal.Remove(e.Id);
            await steps.Waiter.ImageReadyAsync(imageId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
            if (!disk.Persistent) await steps.Client.ImagePersistentAsync(imageId, false, ct).ConfigureAwait(false);
            logger.LogInformation("Restore {Job}: disk {Disk} written to image {Image}", jobId, disk.DiskId, imageId);
        }
        return images;
    }
}
