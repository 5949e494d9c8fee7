using System.Globalization;
using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;

namespace ProxyBackup.Engine;

/// <summary>Where a drill restores and what it checks (docs/operations.md, "Restore drills").</summary>
public sealed record DrillOptions
{
    public required int ImageDatastoreId { get; init; }
    public int? SystemDatastoreId { get; init; }

    /// <summary>Run by /bin/sh once the sandbox VM runs (its id and name in PROXYBACKUP_VM_ID, _VM_NAME); a non-zero exit fails the drill.</summary>
    public string? CheckCommand { get; init; }
    public int CheckTimeoutSeconds { get; init; } = 600;

    /// <summary>How long the sandbox VM may wait to be deployed; null: <see cref="EngineOptions.DeployTimeout"/>.</summary>
    public TimeSpan? DeployTimeout { get; init; }
}

/// <summary>
/// A drill's outcome: whether the restore point came back and ran, its measured recovery time (from
/// the start until the sandbox VM ran; null when it never did), why it failed, and whether the
/// sandbox was removed whole.
/// </summary>
public sealed record DrillResult(string JobId, int VmId, string PointId, bool Succeeded, TimeSpan? RecoveryTime, string? Failure, bool LeftNothing, IReadOnlyList<string> Left);

public sealed partial class RestoreJob
{
    /// <summary>
    /// Rehearses the restore of a point (docs/operations.md, "Restore drills"): every disk restored
    /// into new images and read back from the datastore against the point's chunk names, a VM made of
    /// them in a sandbox (no NICs, a name that says "drill"), waited for until RUNNING, the operator's
    /// check run; then everything it made removed, whatever happened. Every object stays in the job's
    /// journal until then, so a drill killed half-way is removed by the next cleanup pass.
    /// </summary>
    public async Task<DrillResult> DrillAsync(RestorePoint point, DrillOptions options, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        var jobId = JobIds.New("d");
        var cloud = new CloudTransaction(jobId, steps, cleaner, logger);
        var vmId = int.TryParse(point.Tags.GetValueOrDefault("vm_id"), out var v) ? v : -1;
        using var scope = logger.BeginScope(JobIds.Scope(jobId, vmId));
        jobs.Started(jobId, "drill", vmId);
        jobs.Log(jobId, "info", $"drill of {point.Source}/{point.Id} started");
        var started = steps.Options.Time.GetTimestamp();
        TimeSpan? recovery = null;
        string? failure = null;
        try
        {
            var saved = SavedVm(point);
            await CheckTargetsAsync(cloud, point, null, options.ImageDatastoreId, options.SystemDatastoreId, ct).ConfigureAwait(false);
            var images = await RestoreDisksAsync(cloud, point, saved, options.ImageDatastoreId, null, progress, ct, verify: true).ConfigureAwait(false);
            var imageIds = images.ToDictionary(i => i.Key, i => i.Value.Id);
            var name = $"drill-{saved.Name}-{steps.Options.Time.GetUtcNow().UtcDateTime:yyyyMMdd'T'HHmmss}";
            var template = await cloud.AllocateTemplateAsync(RestoreTemplate.Build(saved, imageIds, name, NicMode.NoNic, options.SystemDatastoreId), saved.Id, ct).ConfigureAwait(false);
            var sandbox = await cloud.InstantiateSandboxAsync(template, vmId, name, ct).ConfigureAwait(false);
            await WaitDeployedAsync(cloud, sandbox, name, imageIds, options.DeployTimeout ?? steps.Options.DeployTimeout, progress, ct).ConfigureAwait(false);
            recovery = steps.Options.Time.GetElapsedTime(started);
            jobs.Measured(jobId, recovery.Value);
            jobs.Log(jobId, "info", $"sandbox VM {sandbox} ({name}) RUNNING {recovery.Value.TotalSeconds:0.0} s after the drill started: the recovery time of VM {vmId} from this point");
            if (options.CheckCommand is { Length: > 0 } check)
            {
                var vm = await cloud.ReadVmAsync(sandbox, ct).ConfigureAwait(false);
                var environment = OperatorCommand.VmEnvironment(vm, "check", jobId);
                environment["PROXYBACKUP_DRILLED_VM_ID"] = vmId.ToString(CultureInfo.InvariantCulture);
                var timeout = TimeSpan.FromSeconds(options.CheckTimeoutSeconds);
                var outcome = await OperatorCommand.RunAsync(check, "drill check command", environment, timeout, jobs, jobId, logger, ct).ConfigureAwait(false);
                if (!outcome.Succeeded) failure = $"the check command {outcome.Describe(timeout)}";
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Anything that stops a drill is its finding; a cancellation is said as such after the sandbox is removed.
            failure = ct.IsCancellationRequested ? "cancelled" : e.Message;
        }
        // Whatever happened, the sandbox goes: its VM, images and template, all still journaled.
        using var budget = new CancellationTokenSource(steps.Options.CancelledCleanupBudget);
        var report = await cleaner.CleanAsync(jobId, ct.IsCancellationRequested ? budget.Token : CancellationToken.None).ConfigureAwait(false);
        IReadOnlyList<string> left = [.. report.Failures, .. report.Pending];
        if (left.Count > 0) jobs.Log(jobId, "warning", $"the drill's sandbox is not removed whole; left for the next cleanup pass: {string.Join("; ", left)}");
        var succeeded = failure is null;
        jobs.Log(jobId, succeeded ? "info" : "error", succeeded
            ? $"drill succeeded: restore point {point.Id} restores, its disks read back match, the VM runs{(options.CheckCommand is null ? "" : " and passes its check")}"
            : $"drill failed: {failure}");
        jobs.Finished(jobId, succeeded, point.Disks.Sum(d => d.Size), 0, point.Id, failure);
        if (succeeded) logger.LogInformation("Drill {JobId} of VM {VmId} succeeded: recovery time {Seconds:0.0} s", jobId, vmId, recovery!.Value.TotalSeconds);
        else logger.LogError("Drill {JobId} of VM {VmId} failed: {Failure}", jobId, vmId, failure);
        ct.ThrowIfCancellationRequested();
        return new DrillResult(jobId, vmId, point.Id, succeeded, recovery, failure, left.Count == 0, left);
    }
}
