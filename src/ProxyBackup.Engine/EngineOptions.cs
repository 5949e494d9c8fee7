namespace ProxyBackup.Engine;

public sealed record EngineOptions
{
    /// <summary>The proxy VM: where disks are attached and read.</summary>
    public required int ProxyVmId { get; init; }

    /// <summary>How this cloud's restore points are named (OpenNebula:Cloud).</summary>
    public VmSources Sources { get; init; } = new(null);

    /// <summary>How long a disk snapshot, detach, deletion may take.</summary>
    public TimeSpan OperationTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>A copy (save-as, a new image) may always take this long, however small the disk.</summary>
    public TimeSpan CopyTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>The slowest copy rate the datastores are expected to reach: a copy of N bytes may take N / rate beyond <see cref="CopyTimeout"/>.</summary>
    public long MinimumCopyBytesPerSecond { get; init; } = 20L << 20;

    /// <summary>How long the removal of one leftover may take in the cleanup pass before jobs: a stuck one is tried again later, with a growing pause, instead of holding up every job.</summary>
    public TimeSpan CleanupObjectBudget { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long a cancelled job (operator, SIGTERM) may spend removing what it made; what is left stays journaled for the next pass.</summary>
    public TimeSpan CancelledCleanupBudget { get; init; } = TimeSpan.FromSeconds(20);

    /// <summary>The bound of a copy of <paramref name="bytes"/>: the fixed part and the time at the minimum rate.</summary>
    public TimeSpan CopyTimeoutFor(long bytes) => CopyTimeout + TimeSpan.FromSeconds((double)bytes / MinimumCopyBytesPerSecond);

    /// <summary>How long a restored VM may wait for the scheduler and its first boot before the restore gives up on it.</summary>
    public TimeSpan DeployTimeout { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>How long a hot-plugged disk may take to show up as a block device.</summary>
    public TimeSpan DeviceTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Polling of OpenNebula while waiting (first and longest interval).</summary>
    public TimeSpan FirstPoll { get; init; } = TimeSpan.FromMilliseconds(25);
    public TimeSpan MaxPoll { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>A detach refused because the guest still holds the device is retried this many times,</summary>
    public int DetachAttempts { get; init; } = 5;

    /// <summary>after this delay, doubled each time.</summary>
    public TimeSpan DetachRetryDelay { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// File that serialises hot-plugs on the proxy between processes (beside the catalog, which
    /// every process of one appliance shares); null: within this process only.
    /// </summary>
    public string? HotplugLockFile { get; init; }

    /// <summary>The time waits, deadlines and the journal's in-flight grace are measured with.</summary>
    public TimeProvider Time { get; init; } = TimeProvider.System;

    /// <summary>VM drivers an operator declares to be KVM although their hosts do not report HYPERVISOR=kvm (docs/opennebula.md, "Hypervisors").</summary>
    public IReadOnlySet<string> AllowedVmDrivers { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>Prefix of every object the appliance creates on the cloud, so that an operator recognises them.</summary>
    public string NamePrefix { get; init; } = "pb";
}
