namespace ProxyBackup.Contracts;

/// <summary>
/// Which VMs, when, how and for how long. A plain record: the scheduler's <c>ProtectionPolicyRules</c>
/// validates it as a whole, so that an invalid policy is refused where it is entered, never saved
/// half-valid.
/// </summary>
public sealed record ProtectionPolicy
{
    public required string Name { get; init; }
    public bool Enabled { get; init; } = true;

    /// <summary>Cron expression (5 fields or @daily ...), in <see cref="TimeZone"/>.</summary>
    public required string Schedule { get; init; }
    public string TimeZone { get; init; } = "UTC";

    /// <summary>How long after a scheduled time new VMs may still start; null: until all are done.</summary>
    public TimeSpan? Window { get; init; }

    public VmSelection Selection { get; init; } = new();

    /// <summary>DISK_IDs never backed up, for every selected VM.</summary>
    public IReadOnlyList<int> ExcludeDisks { get; init; } = [];

    /// <summary>Every Nth backup of a VM is a full one (0: only the first).</summary>
    public int FullEveryRuns { get; init; }

    /// <summary>A full backup when the last one is older than this many days (0: never by age).</summary>
    public int FullEveryDays { get; init; }

    public RetentionPolicy Retention { get; init; } = new();

    /// <summary>Higher runs first when several policies compete for the queue.</summary>
    public int Priority { get; init; }

    /// <summary>How many times a failed VM is tried again within the same run.</summary>
    public int Retries { get; init; } = 2;

    /// <summary>How the snapshots of a VM's disks are taken, and the commands run around them.</summary>
    public SnapshotConsistency Consistency { get; init; } = new();

    /// <summary>When and where the policy's VMs are restored on trial (docs/operations.md, "Restore drills").</summary>
    public DrillSchedule Drill { get; init; } = new();
}

/// <summary>A policy's restore drills: on this schedule, each VM it selects is restored from its latest point into a sandbox, run, checked and removed.</summary>
public sealed record DrillSchedule
{
    /// <summary>Cron expression in the policy's time zone; null: no drills.</summary>
    public string? Schedule { get; init; }
    public int ImageDatastoreId { get; init; } = 1;
    public int? SystemDatastoreId { get; init; }

    /// <summary>Run once the sandbox VM runs (PROXYBACKUP_VM_ID, _VM_NAME, _DRILLED_VM_ID in its environment); a non-zero exit fails the drill.</summary>
    public string? CheckCommand { get; init; }
}

/// <summary>
/// What a VM's snapshot set guarantees (docs/operations.md, "Consistency of the snapshot set").
/// Sequential: the disks are snapshotted one after another while the VM runs; each disk is
/// crash-consistent on its own, the set is not one moment. Suspend: the VM is suspended, every disk
/// snapshotted, the VM resumed; the set is one crash-consistent moment, at the price of a pause.
/// </summary>
public enum ConsistencyMode { Sequential, Suspend }

public sealed record SnapshotConsistency
{
    public ConsistencyMode Mode { get; init; } = ConsistencyMode.Sequential;

    /// <summary>Run by /bin/sh before the first snapshot (e.g. flush a database over SSH); a non-zero exit fails the backup before any snapshot.</summary>
    public string? PreCommand { get; init; }

    /// <summary>Run by /bin/sh after the snapshot set, also when taking it failed, once a pre-command succeeded (e.g. thaw the database); a failure is a warning.</summary>
    public string? PostCommand { get; init; }

    /// <summary>Each command is stopped after this many seconds (a pre-command then fails the backup).</summary>
    public int CommandTimeoutSeconds { get; init; } = 300;
}

/// <summary>A VM is selected when it matches any criterion given: ID, name, name pattern, label, or USER_TEMPLATE attribute.</summary>
public sealed record VmSelection
{
    public IReadOnlyList<int> VmIds { get; init; } = [];

    /// <summary>Exact VM names, as `vm backup` takes them: every VM of that name, also one created again after a restore.</summary>
    public IReadOnlyList<string> VmNames { get; init; } = [];

    /// <summary>Glob on the VM name: * any run of characters, ? one character.</summary>
    public string? NamePattern { get; init; }
    public string? Label { get; init; }
    public string? AttributeName { get; init; }
    public string? AttributeValue { get; init; }

    public bool IsEmpty => VmIds.Count == 0 && VmNames.Count == 0 && NamePattern is null && Label is null && AttributeName is null;

    /// <summary>VMs named by ID or by name, as an operator types them: a number is an ID, anything else a name.</summary>
    public static VmSelection ByIdOrName(IEnumerable<string> vms)
    {
        var given = vms.Select(v => v.Trim()).Where(v => v.Length > 0).ToList();
        var ids = given.Where(IsId).Select(v => int.Parse(v, System.Globalization.CultureInfo.InvariantCulture)).Distinct().ToList();
        return new VmSelection { VmIds = ids, VmNames = [.. given.Where(v => !IsId(v)).Distinct(StringComparer.Ordinal)] };
    }

    private static bool IsId(string text) => int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _);
}

/// <summary>
/// Which restore points to keep: the last N, one per day/week/month/year for the last N such
/// periods (grandfather-father-son), and everything within a duration. A restore point kept by any
/// rule stays. An empty policy keeps everything (nothing is ever removed by accident).
/// </summary>
public sealed record RetentionPolicy
{
    public int KeepLast { get; init; }
    public int KeepDaily { get; init; }
    public int KeepWeekly { get; init; }
    public int KeepMonthly { get; init; }
    public int KeepYearly { get; init; }
    public TimeSpan? KeepWithin { get; init; }

    public bool IsEmpty => KeepLast == 0 && KeepDaily == 0 && KeepWeekly == 0 && KeepMonthly == 0 && KeepYearly == 0 && KeepWithin is null;

    public void Validate()
    {
        if (new[] { KeepLast, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly }.Any(n => n < 0) || KeepWithin < TimeSpan.Zero)
            throw new ArgumentException("Retention counts and durations cannot be negative.");
    }
}

/// <summary>Where policies and their last handled slots live (the catalog).</summary>
public interface IPolicyStore
{
    IReadOnlyList<ProtectionPolicy> Policies();
    IReadOnlyDictionary<string, DateTimeOffset> LastSlots();
    void SetLastSlot(string policy, DateTimeOffset slot);

    /// <summary>Adds or replaces a policy as given (ProtectionPolicyRules.Save validates it first).</summary>
    void SavePolicy(ProtectionPolicy policy);

    /// <summary>
    /// Plans a policy's run once for every proxy sharing the catalog (docs/architecture.md, "Several
    /// proxies"): moves the policy's last slot forward to <paramref name="slot"/> and queues
    /// <paramref name="vms"/> for it, in one transaction. True for the one caller that did; false when
    /// the slot was planned already (by another proxy, or a run of this one).
    /// </summary>
    bool PlanRun(string policy, DateTimeOffset slot, DateTimeOffset? startBy, IReadOnlyList<(int Id, string Name)> vms);

    /// <summary>The queued VMs of each policy's latest planned run that no live process holds: not started yet, or started by a process that is gone.</summary>
    IReadOnlyList<QueuedRun> ClaimableRuns();

    /// <summary>Takes a queued VM for this process, under the catalog's row lock; false when another process took it first.</summary>
    bool ClaimRun(QueuedRun run);

    /// <summary>
    /// This process is done with a VM it claimed (<paramref name="outcome"/>: succeeded, failed,
    /// cancelled, expired, gone, merged), or gives it back to the queue unfinished (null: a shutdown).
    /// </summary>
    void EndRun(QueuedRun run, string? outcome);

    /// <summary>The clusters of the proxies that hold a live lease (docs/architecture.md, "Several proxies"): a VM none of them reaches is served by no proxy.</summary>
    IReadOnlySet<int> ServedClusters();
}

/// <summary>A VM queued for a policy's run in the catalog; <paramref name="Owner"/> is the process that claimed it and is gone (null: not claimed yet).</summary>
public sealed record QueuedRun(string Policy, DateTimeOffset Slot, int VmId, string VmName, DateTimeOffset? StartBy, ProcessOwner? Owner);
