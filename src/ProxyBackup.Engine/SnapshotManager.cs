using ProxyBackup.OpenNebula;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine;

/// <summary>
/// Disk snapshots of a VM: list, create, delete, and revert. Revert needs POWEROFF on OpenNebula
/// 6.8 and later: a running VM is powered off only when the caller allows it (gracefully, or hard
/// when asked), reverted disk by disk, and resumed to the state it had.
/// </summary>
public sealed class SnapshotManager(CloudSteps steps, IVmGuard guard)
{
    public async Task<IReadOnlyList<(int DiskId, DiskSnapshot Snapshot)>> ListAsync(int vmId, CancellationToken ct = default)
    {
        var vm = await steps.Client.VmInfoAsync(vmId, ct).ConfigureAwait(false);
        return [.. vm.Snapshots.SelectMany(s => s.Snapshots.Select(x => (s.DiskId, x)))];
    }

    public async Task<int> CreateAsync(int vmId, int diskId, string name, CancellationToken ct = default)
    {
        using var held = guard.Acquire(vmId, JobIds.New("s"), "snapshot");
        await steps.Waiter.VmSettledAsync(vmId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
        var id = await steps.Client.VmDiskSnapshotCreateAsync(vmId, diskId, name, ct).ConfigureAwait(false);
        var vm = await steps.Waiter.VmSettledAsync(vmId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.SnapshotsOf(diskId).All(s => s.Id != id))
            throw new JobFailedException($"OpenNebula did not create the snapshot of disk {diskId} of VM {vmId}{(vm.LastError is { } e ? $" (last OpenNebula error: {e})" : "")}.");
        return id;
    }

    public async Task DeleteAsync(int vmId, int diskId, int snapshotId, CancellationToken ct = default)
    {
        using var held = guard.Acquire(vmId, JobIds.New("s"), "snapshot delete");
        var vm = await steps.Waiter.VmSettledAsync(vmId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
        if (vm.Disk(diskId) is null) throw new JobFailedException($"VM {vmId} has no disk {diskId}.");
        if (vm.SnapshotsOf(diskId).All(s => s.Id != snapshotId))
            throw new JobFailedException($"Disk {diskId} of VM {vmId} has no snapshot {snapshotId}; 'proxybackup snapshot list {vmId}' shows the ones it has.");
        await steps.DeleteSnapshotAsync(vmId, diskId, snapshotId, ct).ConfigureAwait(false);
    }

    /// <summary>Reverts disks to snapshots (disk → snapshot), one after another.</summary>
    public async Task RevertAsync(int vmId, IReadOnlyDictionary<int, int> snapshots, bool allowPowerOff, bool hard, CancellationToken ct = default)
    {
        using var held = guard.Acquire(vmId, JobIds.New("s"), "snapshot revert");
        var vm = await steps.Waiter.VmSettledAsync(vmId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
        foreach (var (disk, snap) in snapshots)
            if (vm.SnapshotsOf(disk).All(s => s.Id != snap)) throw new JobFailedException($"Disk {disk} of VM {vmId} has no snapshot {snap}.");
        var wasRunning = vm is { State: VmState.Active, LcmState: LcmState.Running };
        if (vm.State != VmState.Poweroff)
        {
            if (!wasRunning) throw new JobFailedException($"VM {vmId} is {vm.StateName}; a revert needs it POWEROFF (OpenNebula 6.8+).");
            if (!allowPowerOff) throw new JobFailedException($"VM {vmId} is RUNNING; a revert needs it powered off. Allow it (--poweroff), or power it off first.");
            await steps.PowerOffAsync(vmId, hard, ct).ConfigureAwait(false);
        }
        foreach (var (disk, snap) in snapshots)
        {
            await steps.Client.VmDiskSnapshotRevertAsync(vmId, disk, snap, ct).ConfigureAwait(false);
            vm = await steps.Waiter.VmSettledAsync(vmId, steps.Options.OperationTimeout, ct).ConfigureAwait(false);
            if (vm.SnapshotsOf(disk).FirstOrDefault(s => s.Id == snap) is not { Active: true })
                throw new JobFailedException($"Reverting disk {disk} of VM {vmId} to snapshot {snap} failed{(vm.LastError is { } e ? $" (last OpenNebula error: {e})" : "")}.");
        }
        if (wasRunning) await steps.ResumeAsync(vmId, ct).ConfigureAwait(false);
    }
}
