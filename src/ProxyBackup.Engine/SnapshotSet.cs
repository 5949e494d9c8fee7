using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>The snapshots of a VM's disks, and how long the VM was paused for them (null: not paused).</summary>
public sealed record TakenSnapshotSet(IReadOnlyDictionary<int, JobSnapshot> Snapshots, TimeSpan? Paused);

/// <summary>
/// Takes the snapshot set of one backup as its policy asks (docs/operations.md, "Consistency of the
/// snapshot set"): the operator's pre-command (a failure stops the backup before any snapshot), the
/// VM suspended when the mode is Suspend and it runs, every disk snapshotted, the VM resumed (also
/// when a snapshot failed), then the post-command (a failure is a warning: the snapshots exist).
/// </summary>
internal sealed class SnapshotSet(CloudTransaction cloud, IJobRecorder jobs, ILogger logger)
{
    public async Task<TakenSnapshotSet> TakeAsync(VirtualMachine vm, IReadOnlyList<VmDisk> disks, SnapshotConsistency consistency, List<string> warnings, CancellationToken ct)
    {
        var timeout = TimeSpan.FromSeconds(consistency.CommandTimeoutSeconds);
        if (consistency.PreCommand is { Length: > 0 } pre)
        {
            var outcome = await RunCommandAsync(pre, "pre", vm, timeout, ct).ConfigureAwait(false);
            if (!outcome.Succeeded) throw new JobFailedException($"The pre-snapshot command {outcome.Describe(timeout)}; no snapshot was taken.");
        }
        try
        {
            return await SnapshotDisksAsync(vm, disks, consistency.Mode, ct).ConfigureAwait(false);
        }
        finally
        {
            if (consistency.PostCommand is { Length: > 0 } post)
            {
                // Run also when the job is being cancelled: it undoes what the pre-command did (a frozen database).
                var outcome = await RunCommandAsync(post, "post", vm, timeout, CancellationToken.None).ConfigureAwait(false);
                if (!outcome.Succeeded) warnings.Add($"the post-snapshot command {outcome.Describe(timeout)}");
            }
        }
    }

    private async Task<TakenSnapshotSet> SnapshotDisksAsync(VirtualMachine vm, IReadOnlyList<VmDisk> disks, ConsistencyMode mode, CancellationToken ct)
    {
        // A VM that does not run writes nothing: its disks are one moment already, no pause needed.
        var suspension = mode == ConsistencyMode.Suspend && vm is { State: VmState.Active, LcmState: LcmState.Running }
            ? await cloud.SuspendAsync(vm.Id, ct).ConfigureAwait(false)
            : null;
        var snapshots = new Dictionary<int, JobSnapshot>();
        TimeSpan? paused = null;
        try
        {
            // Sequential: back to back while the VM runs; each disk crash-consistent on its own, the
            // set not one moment across disks (docs/opennebula.md, "Disk snapshots").
            foreach (var d in disks)
            {
                ct.ThrowIfCancellationRequested();
                snapshots[d.DiskId] = await cloud.TakeSnapshotAsync(vm.Id, d.DiskId, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            // Not cut by a cancellation: the VM's users wait for it (the operation timeout bounds it);
            // a resume that fails leaves its journal entry, and the job's compensation resumes it.
            if (suspension is not null) paused = await cloud.ResumeAsync(suspension, CancellationToken.None).ConfigureAwait(false);
        }
        if (paused is { } p)
            jobs.Log(cloud.JobId, "info", $"VM {vm.Id} paused {p.TotalSeconds:0.0} s for a consistent snapshot set of {disks.Count} disk(s) (suspend)");
        return new TakenSnapshotSet(snapshots, paused);
    }

    /// <summary>The operator's command with the VM's id, name and addresses in its environment (docs/operations.md, "Consistency of the snapshot set").</summary>
    private Task<OperatorCommand.Outcome> RunCommandAsync(string command, string phase, VirtualMachine vm, TimeSpan timeout, CancellationToken ct) =>
        OperatorCommand.RunAsync(command, $"{phase}-snapshot command", OperatorCommand.VmEnvironment(vm, phase, cloud.JobId), timeout, jobs, cloud.JobId, logger, ct);
}
