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

    /// <summary>
    /// The new VM's name and its images' base name (disk N becomes image "NAME-disk-N"); default: the
    /// original's name with "-restored-" and the restore point's time.
    /// </summary>
    public string? Name { get; init; }

    /// <summary>Stop at the VM template with the restored disks: no VM is made.</summary>
    public bool TemplateOnly { get; init; }

    /// <summary>Give what is made to the original VM's owner and group, when the appliance's account may (else one warning).</summary>
    public bool OriginalOwner { get; init; } = true;

    /// <summary>Read each written disk back from the cloud's storage and compare it with the restore point before it is used.</summary>
    public bool VerifyDisks { get; init; }
    public NicMode Nics { get; init; } = NicMode.NoIp;

    /// <summary>Restore only these DISK_IDs (the others become empty images); null: all.</summary>
    public IReadOnlySet<int>? Disks { get; init; }

    /// <summary>How long the new VM may wait to be deployed; null: <see cref="EngineOptions.DeployTimeout"/>.</summary>
    public TimeSpan? DeployTimeout { get; init; }
}

/// <summary>What a restore made: the VM (none for a template or a disk), its images by DISK_ID, the template it left (template-only), and what did not go as asked.</summary>
public sealed record RestoreResult(string JobId, int? VmId, IReadOnlyDictionary<int, int> Images, int? TemplateId = null, IReadOnlyList<string>? Warnings = null);

/// <summary>
/// Restore runs the backup road backwards (docs/opennebula.md, "Restore flow"): per disk an empty persistent
/// image attached to the proxy and written, then a VM created from the saved document. Until the
/// job succeeds, every image and template it made is in the journal, and is removed if it fails.
/// </summary>
public sealed partial class RestoreJob(CloudSteps steps, CloudCleaner cleaner, IJobRecorder jobs, BackupRepository repository, ILogger logger, IVmGuard guard)
{
    public async Task<RestoreResult> RestoreVmAsync(RestorePoint point, RestoreVmOptions options, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        return await Guarded(point, async cloud =>
        {
            var saved = SavedVm(point);
            await CheckTargetsAsync(cloud, point, options.Disks, options.ImageDatastoreId, options.SystemDatastoreId, ct).ConfigureAwait(false);
            var images = await RestoreDisksAsync(cloud, point, saved, options.ImageDatastoreId, options.Disks, progress, ct, verify: options.VerifyDisks).ConfigureAwait(false);
            var name = options.Name ?? DefaultName(saved, point);
            var imageIds = images.ToDictionary(i => i.Key, i => i.Value.Id);
            var template = await cloud.AllocateTemplateAsync(RestoreTemplate.Build(saved, imageIds, name, options.Nics, options.SystemDatastoreId), saved.Id, ct).ConfigureAwait(false);
            var warnings = new List<string>();
            if (options.TemplateOnly)
            {
                cloud.HandOver(images.Values, $"the restored template {template.Id}");
                cloud.HandOver(template, "the operator");
                await NameAndOwnAsync(cloud, saved, name, images, null, template, options.OriginalOwner, warnings, ct).ConfigureAwait(false);
                logger.LogInformation("Restore {JobId}: template {Template} ({Name}) holds the disks of restore point {Point}", cloud.JobId, template.Id, name, point.Id);
                return new RestoreResult(cloud.JobId, null, imageIds, template.Id, warnings);
            }
            var vmId = await cloud.InstantiateAsync(template, name, ct).ConfigureAwait(false);
            cloud.HandOver(images.Values, $"the restored VM {vmId}");
            await NameAndOwnAsync(cloud, saved, name, images, vmId, null, options.OriginalOwner, warnings, ct).ConfigureAwait(false);
            // The VM exists: a template that cannot be deleted now is a leftover for the cleanup
            // (it stays journaled), not a failed restore that an operator would run again.
            try
            {
                await cloud.DeleteTemplateAsync(template, ct).ConfigureAwait(false);
            }
            catch (UserFacingException e)
            {
                jobs.Log(cloud.JobId, "warning", $"the temporary template {template.Id} could not be deleted ({e.Message}); the next cleanup removes it");
                logger.LogWarning("Restore {JobId}: temporary template {Template} left for the cleanup: {Error}", cloud.JobId, template.Id, e.Message);
            }
            await WaitDeployedAsync(cloud, vmId, name, imageIds, options.DeployTimeout ?? steps.Options.DeployTimeout, progress, ct).ConfigureAwait(false);
            logger.LogInformation("Restore {JobId}: VM {VmId} ({Name}) is RUNNING from restore point {Point}", cloud.JobId, vmId, name, point.Id);
            return new RestoreResult(cloud.JobId, vmId, imageIds, null, warnings);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>One disk of a restore point as a new image (no VM), named "NAME-disk-N" and given to the original owner like a VM's.</summary>
    public async Task<RestoreResult> RestoreDiskAsImageAsync(RestorePoint point, int diskId, int datastoreId, IProgress<TransferProgress>? progress = null, CancellationToken ct = default,
        string? name = null, bool originalOwner = true)
    {
        return await Guarded(point, async cloud =>
        {
            var saved = SavedVm(point);
            var only = new HashSet<int> { diskId };
            await CheckTargetsAsync(cloud, point, only, datastoreId, systemDatastoreId: null, ct).ConfigureAwait(false);
            var images = await RestoreDisksAsync(cloud, point, saved, datastoreId, only, progress, ct, onlyListed: true).ConfigureAwait(false);
            cloud.HandOver(images.Values, "the operator");
            var warnings = new List<string>();
            await NameAndOwnAsync(cloud, saved, name ?? DefaultName(saved, point), images, null, null, originalOwner, warnings, ct).ConfigureAwait(false);
            return new RestoreResult(cloud.JobId, null, images.ToDictionary(i => i.Key, i => i.Value.Id), null, warnings);
        }, ct).ConfigureAwait(false);
    }

    private async Task<RestoreResult> Guarded(RestorePoint point, Func<CloudTransaction, Task<RestoreResult>> work, CancellationToken ct)
    {
        var jobId = JobIds.New("r");
        var cloud = new CloudTransaction(jobId, steps, cleaner, logger);
        var vmId = int.TryParse(point.Tags.GetValueOrDefault("vm_id"), out var v) ? v : -1;
        using var scope = logger.BeginScope(JobIds.Scope(jobId, vmId));
        jobs.Started(jobId, "restore", vmId);
        jobs.Log(jobId, "info", $"restore of {point.Source}/{point.Id} started");
        try
        {
            var result = await work(cloud).ConfigureAwait(false);
            jobs.Log(jobId, "info", cloud.HotplugSummary);
            jobs.Finished(jobId, true, point.Disks.Sum(d => d.Size), 0, point.Id, null);
            return result;
        }
        catch (Exception e) when (e is not OperationCanceledException || ct.IsCancellationRequested)
        {
            jobs.Log(jobId, "error", e is OperationCanceledException ? "cancelled" : e.Message);
            jobs.Finished(jobId, false, 0, 0, point.Id, e is OperationCanceledException ? "cancelled" : e.Message);
            logger.LogError("Restore {JobId} failed: {Error}; removing what it created", jobId, e.Message);
            await cloud.CompensateAsync(cancelled: ct.IsCancellationRequested, jobs).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The datastores named exist, are of the right kind and have room, before anything is created.</summary>
    private static async Task CheckTargetsAsync(CloudTransaction cloud, RestorePoint point, IReadOnlySet<int>? disks, int imageDatastoreId, int? systemDatastoreId, CancellationToken ct)
    {
        var pool = await cloud.ReadDatastoresAsync(ct).ConfigureAwait(false);
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
    private async Task WaitDeployedAsync(CloudTransaction cloud, int vmId, string name, IReadOnlyDictionary<int, int> images, TimeSpan timeout, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var jobId = cloud.JobId;
        string? said = null;
        var started = steps.Options.Time.GetTimestamp();
        string Left() => $"VM {vmId} ({name}) is left PENDING with the restored disks in image(s) {string.Join(", ", images.Values)}: it deploys once the cause is fixed; to give it up, 'onevm recover --delete {vmId}' and 'oneimage delete {string.Join(" ", images.Values)}'";
        bool Deployed(VirtualMachine vm)
        {
            if (vm.State == VmState.Pending && vm.SchedulerMessage is { Length: > 0 } message && message != said)
            {
                said = message;
                jobs.Log(jobId, "warning", $"VM {vmId} waits for the scheduler: {message}");
                logger.LogWarning("Restore {JobId}: VM {VmId} waits for the scheduler: {Message}", jobId, vmId, message);
                progress?.Report(new TransferProgress($"VM {vmId} PENDING: {message}", 0, 0, null, steps.Options.Time.GetElapsedTime(started)));
            }
            return vm is { State: VmState.Active, LcmState: LcmState.Running };
        }
        try
        {
            await cloud.WaitForVmAsync(vmId, "RUNNING", Deployed, timeout, ct).ConfigureAwait(false);
        }
        catch (OneWaitTimeoutException)
        {
            throw new JobFailedException($"VM {vmId} ({name}) was not running after {timeout.TotalMinutes:0.#} min{(said is null ? "" : $"; the scheduler says: {said}")}. {Left()}.");
        }
        catch (OperationCanceledException)
        {
            jobs.Log(jobId, "warning", Left());
            logger.LogWarning("Restore {JobId} cancelled while waiting: {Left}", jobId, Left());
            throw;
        }
    }

    /// <summary>Reads a written disk back from its device (O_DIRECT: the storage, not the proxy's cache) while it is still attached, and compares it with the point.</summary>
    private async Task VerifyWrittenAsync(CloudTransaction cloud, RestorePoint point, int diskId, int imageId, string device, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var comparison = await repository.CompareDiskAsync(point, diskId.ToString(CultureInfo.InvariantCulture), device, progress, ct).ConfigureAwait(false);
        if (!comparison.Same)
            throw new JobFailedException($"Disk {diskId} read back from image {imageId} differs from restore point {point.Id} in {comparison.DifferingChunks} of {comparison.Chunks} chunks (the first at byte {comparison.FirstDifferenceOffset}): the datastore did not keep what was written.");
        jobs.Log(cloud.JobId, "info", $"disk {diskId} read back from image {imageId}: all {comparison.Chunks} chunks match restore point {point.Id}");
    }

    private static string DefaultName(VirtualMachine saved, RestorePoint point) => $"{saved.Name}-restored-{point.Time.UtcDateTime:yyyyMMdd'T'HHmmss}";

    /// <summary>
    /// Names what the restore made after the VM (images "NAME-disk-N", the template NAME) and gives it
    /// to the original VM's owner and group (docs/operations.md, "Names and owners of what a restore
    /// makes"). The objects are made under the job's unique names, which the cleanup journal finds
    /// them by, and renamed once handed over. Neither step fails the restore: the data is there, and
    /// each problem is one warning (an account that may not change owners is told once).
    /// </summary>
    private async Task NameAndOwnAsync(CloudTransaction cloud, VirtualMachine saved, string name, IReadOnlyDictionary<int, JobImage> images, int? vmId, JobTemplate? template,
        bool originalOwner, List<string> warnings, CancellationToken ct)
    {
        var client = steps.Client;
        var renames = images.Select(i => (OneObject.Image, i.Value.Id, i.Value.Name, $"{name}-disk-{i.Key}")).ToList();
        if (template is not null) renames.Add((OneObject.Template, template.Id, template.Name, name));
        foreach (var (kind, id, current, wanted) in renames)
        {
            try { await client.RenameAsync(kind, id, wanted, ct).ConfigureAwait(false); }
            catch (OneException e) { warnings.Add($"{kind.ToString().ToLowerInvariant()} {id} keeps the name {current}: {e.Message}"); }
        }
        if (originalOwner)
        {
            List<(OneObject Kind, int Id)> owned = [.. images.Values.Select(i => (OneObject.Image, i.Id))];
            if (vmId is { } vm) owned.Insert(0, (OneObject.Vm, vm));
            if (template is not null) owned.Insert(0, (OneObject.Template, template.Id));
            try
            {
                foreach (var (kind, id) in owned) await client.ChownAsync(kind, id, saved.Uid, saved.Gid, ct).ConfigureAwait(false);
            }
            catch (OneException e) when (e is OneAuthorizationException or OneNotFoundException)
            {
                warnings.Add($"what the restore made stays owned by the appliance's user: it could not be given to the original owner {saved.UserName} (user {saved.Uid}, group {saved.GroupName}): {e.Message}");
            }
        }
        foreach (var w in warnings)
        {
            jobs.Log(cloud.JobId, "warning", w);
            logger.LogWarning("Restore {JobId}: {Warning}", cloud.JobId, w);
        }
    }

    private VirtualMachine SavedVm(RestorePoint point) =>
        VirtualMachine.Parse(OneXml.Parse(System.Text.Encoding.UTF8.GetString(repository.LoadMetadata(point, "vm.xml"))));

    /// <summary>The disks the backup left out (tag disks_excluded, docs/repository-format.md "Tags and metadata the engine writes").</summary>
    private static HashSet<int> ExcludedDisks(RestorePoint point)
    {
        var excluded = new HashSet<int>();
        foreach (var text in (point.Tags.GetValueOrDefault("disks_excluded") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
            excluded.Add(int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var id)
                ? id
                : throw new JobFailedException($"Restore point {point.Source}/{point.Id} has a tag disks_excluded '{point.Tags["disks_excluded"]}' that is not a list of disk IDs (damaged or edited); restore its disks one by one as images (vm restore VM --disk N)."));
        return excluded;
    }

    private async Task<Dictionary<int, JobImage>> RestoreDisksAsync(CloudTransaction cloud, RestorePoint point, VirtualMachine saved, int datastoreId,
        IReadOnlySet<int>? only, IProgress<TransferProgress>? progress, CancellationToken ct, bool onlyListed = false, bool verify = false)
    {
        // A disk restored as an image alone needs no list of the excluded ones (they come back empty in a VM).
        var excluded = onlyListed ? [] : ExcludedDisks(point);
        var plan = new List<(VmDisk Disk, bool Wanted, long Size)>();
        foreach (var disk in saved.Disks.Where(d => !d.IsVolatile && !d.IsCdrom))
        {
            var backedUp = point.Disks.Any(d => d.Disk == disk.DiskId.ToString(CultureInfo.InvariantCulture));
            var wanted = (only is null || only.Contains(disk.DiskId)) && backedUp;
            if (onlyListed && !wanted) continue;
            if (!backedUp && !excluded.Contains(disk.DiskId)) continue;
            plan.Add((disk, wanted, wanted ? point.Disk(disk.DiskId.ToString(CultureInfo.InvariantCulture)).Size : disk.SizeMb << 20));
        }
        ct.ThrowIfCancellationRequested();
        // Every image at once: the datastore creates them side by side while the proxy writes the
        // first (docs/architecture.md, "What is serialised"); the restore needs them all anyway.
        // The first failure stops the others' waits: the images are journaled, and the job's
        // compensation removes them, instead of the job waiting for copies it will delete.
        using var stopAllocating = CancellationTokenSource.CreateLinkedTokenSource(ct);
        async Task<JobImage> AllocateAsync(VmDisk disk, long size)
        {
            try
            {
                return await cloud.AllocateImageAsync(saved.Id, disk.DiskId, $"{steps.Options.NamePrefix}-restore-{saved.Id}-d{disk.DiskId}-{cloud.JobId}",
                    size, datastoreId, disk.DevPrefix ?? "vd", stopAllocating.Token).ConfigureAwait(false);
            }
            catch
            {
                await stopAllocating.CancelAsync().ConfigureAwait(false);
                throw;
            }
        }
        var allocations = plan.Select(p => AllocateAsync(p.Disk, p.Size)).ToList();
        // Faulted wins over cancelled in WhenAll: the job reports the failure, not a stopped sibling.
        await Task.WhenAll(allocations).ConfigureAwait(false);
        var images = new Dictionary<int, JobImage>();
        foreach (var ((disk, wanted, _), allocation) in plan.Zip(allocations))
        {
            var image = images[disk.DiskId] = allocation.Result;
            if (!wanted) continue; // an excluded disk comes back empty
            ct.ThrowIfCancellationRequested();
            var attachment = await cloud.AttachAsync(image, readOnly: false, ct).ConfigureAwait(false);
            try
            {
                var diskName = disk.DiskId.ToString(CultureInfo.InvariantCulture);
                await repository.RestoreDiskAsync(point, diskName, attachment.Device, new RestoreOptions { TargetIsZeroed = true }, progress, ct).ConfigureAwait(false);
                if (verify) await VerifyWrittenAsync(cloud, point, disk.DiskId, image.Id, attachment.Device, progress, ct).ConfigureAwait(false);
            }
            finally
            {
                await cloud.DetachAsync(attachment).ConfigureAwait(false);
            }
            await cloud.FinishRestoredImageAsync(image, disk.Persistent, ct).ConfigureAwait(false);
            logger.LogInformation("Restore {JobId}: disk {Disk} written to image {Image}", cloud.JobId, disk.DiskId, image.Id);
        }
        return images;
    }
}
