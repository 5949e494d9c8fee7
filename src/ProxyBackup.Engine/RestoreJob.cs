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

    /// <summary>How long the new VM may wait to be deployed; null: <see cref="EngineOptions.DeployTimeout"/>.</summary>
    public TimeSpan? DeployTimeout { get; init; }
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
            await CheckTargetsAsync(point, options.Disks, options.ImageDatastoreId, options.SystemDatastoreId, ct).ConfigureAwait(false);
            var images = await RestoreDisksAsync(jobId, point, saved, options.ImageDatastoreId, options.Disks, progress, ct).ConfigureAwait(false);
            var name = options.Name ?? $"{saved.Name}-restored-{point.Time.UtcDateTime:yyyyMMdd'T'HHmmss}";
            var template = RestoreTemplate.Build(saved, images, name, options.Nics, options.SystemDatastoreId);
            var templateName = $"{steps.Options.NamePrefix}-{jobId}-template";
            var entry = steps.Journal.Record(jobId, CloudObjectKind.Template, saved.Id, -1, templateName);
            template.Set("NAME", templateName);
            var templateId = await steps.CreateAsync(entry, c => steps.Client.TemplateAllocateAsync(template, c), ct).ConfigureAwait(false);
            var vmId = await InstantiateAsync(templateId, name, ct).ConfigureAwait(false);
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
            await WaitDeployedAsync(jobId, vmId, name, images, options.DeployTimeout ?? steps.Options.DeployTimeout, progress, ct).ConfigureAwait(false);
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
            var only = new HashSet<int> { diskId };
            await CheckTargetsAsync(point, only, datastoreId, systemDatastoreId: null, ct).ConfigureAwait(false);
            var images = await RestoreDisksAsync(jobId, point, saved, datastoreId, only, progress, ct, onlyListed: true).ConfigureAwait(false);
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
            await cleaner.CleanAfterJobAsync(jobId, cancelled: ct.IsCancellationRequested, jobs).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Creates the VM from the job's template. An answer lost on the way back may hide a VM that
    /// exists: it is found by its name and the template it came from (unique to the job), so the
    /// restore neither fails with a VM running nor makes a second one (docs/architecture.md,
    /// "Every cloud object has an owner").
    /// </summary>
    private async Task<int> InstantiateAsync(int templateId, string name, CancellationToken ct)
    {
        try
        {
            return await steps.Client.TemplateInstantiateAsync(templateId, name, hold: false, extra: null, ct: CancellationToken.None).ConfigureAwait(false);
        }
        catch (ProxyBackup.XmlRpc.XmlRpcTransportException e) when (e.RequestMayHaveBeenProcessed)
        {
            foreach (var candidate in (await steps.Client.VmPoolAsync(ct: ct).ConfigureAwait(false)).Where(v => v.Name == name))
            {
                var vm = await steps.Client.VmInfoAsync(candidate.Id, ct).ConfigureAwait(false);
                if (vm.Template.Element("TEMPLATE_ID")?.Value == templateId.ToString(CultureInfo.InvariantCulture))
                {
                    logger.LogWarning("The answer to instantiating template {Template} was lost ({Error}); the VM it created is {Vm}", templateId, e.Message, vm.Id);
                    return vm.Id;
                }
            }
            throw;
        }
    }

    /// <summary>The datastores named exist, are of the right kind and have room, before anything is created.</summary>
    private async Task CheckTargetsAsync(RestorePoint point, IReadOnlySet<int>? disks, int imageDatastoreId, int? systemDatastoreId, CancellationToken ct)
    {
        var pool = await steps.Client.DatastorePoolAsync(ct).ConfigureAwait(false);
        string Known() => string.Join(", ", pool.Select(d => $"{d.Id} {d.Name} ({Kind(d)})"));
        static string Kind(OneDatastore d) => d.Type.ToString().ToUpperInvariant();
        var image = pool.FirstOrDefault(d => d.Id == imageDatastoreId)
            ?? throw new JobFailedException($"Image datastore {imageDatastoreId} does not exist. Datastores: {Known()}.");
        if (image.Type != DatastoreType.Image)
            throw new JobFailedException($"Datastore {image.Id} ({image.Name}) is a {Kind(image)} datastore; restored disks go to an IMAGE datastore. Datastores: {Known()}.");
        var neededMb = point.Disks.Where(d => disks is null || disks.Contains(int.Parse(d.Disk, CultureInfo.InvariantCulture))).Sum(d => (d.Size + (1 << 20) - 1) >> 20);
        if (image.TotalMb > 0 && neededMb > image.FreeMb)
            throw new JobFailedException($"Image datastore {image.Id} ({image.Name}) has {image.FreeMb} MB free; the restore needs {neededMb} MB.");
        if (systemDatastoreId is { } sys)
        {
            var system = pool.FirstOrDefault(d => d.Id == sys)
                ?? throw new JobFailedException($"System datastore {sys} does not exist. Datastores: {Known()}.");
            if (system.Type != DatastoreType.System)
                throw new JobFailedException($"Datastore {system.Id} ({system.Name}) is a {Kind(system)} datastore; a VM runs from a SYSTEM datastore. Datastores: {Known()}.");
        }
    }

    /// <summary>
    /// Waits for the scheduler to deploy the new VM and for it to run, showing why it waits
    /// (SCHED_MESSAGE). A VM that is not deployed in time, or a wait that is cancelled, leaves the
    /// VM PENDING with the restored disks: it deploys once the cause is fixed; the message names it.
    /// </summary>
    private async Task WaitDeployedAsync(string jobId, int vmId, string name, IReadOnlyDictionary<int, int> images, TimeSpan timeout, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        string? said = null;
        var started = steps.Options.Time.GetTimestamp();
        string Left() => $"VM {vmId} ({name}) is left PENDING with the restored disks in image(s) {string.Join(", ", images.Values)}: it deploys once the cause is fixed; to give it up, 'onevm recover --delete {vmId}' and 'oneimage delete {string.Join(" ", images.Values)}'";
        bool Deployed(VirtualMachine vm)
        {
            if (vm.State == VmState.Pending && vm.SchedulerMessage is { Length: > 0 } message && message != said)
            {
                said = message;
                jobs.Log(jobId, "warning", $"VM {vmId} waits for the scheduler: {message}");
                logger.LogWarning("Restore {Job}: VM {Vm} waits for the scheduler: {Message}", jobId, vmId, message);
                progress?.Report(new TransferProgress($"VM {vmId} PENDING: {message}", 0, 0, null, steps.Options.Time.GetElapsedTime(started)));
            }
            return vm is { State: VmState.Active, LcmState: LcmState.Running };
        }
        try
        {
            await steps.Waiter.VmUntilAsync(vmId, "RUNNING", Deployed, timeout, ct).ConfigureAwait(false);
        }
        catch (OneWaitTimeoutException)
        {
            throw new JobFailedException($"VM {vmId} ({name}) was not running after {timeout.TotalMinutes:0.#} min{(said is null ? "" : $"; the scheduler says: {said}")}. {Left()}.");
        }
        catch (OperationCanceledException)
        {
            jobs.Log(jobId, "warning", Left());
            logger.LogWarning("Restore {Job} cancelled while waiting: {Left}", jobId, Left());
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
