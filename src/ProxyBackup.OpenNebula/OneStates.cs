namespace ProxyBackup.OpenNebula;

/// <summary>/VM/STATE (include/VirtualMachine.h).</summary>
public enum VmState
{
    Init = 0, Pending = 1, Hold = 2, Active = 3, Stopped = 4, Suspended = 5, Done = 6, Failed = 7,
    Poweroff = 8, Undeployed = 9, Cloning = 10, CloningFailure = 11,
}

/// <summary>/VM/LCM_STATE, meaningful when STATE is ACTIVE.</summary>
public enum LcmState
{
    LcmInit = 0, Prolog = 1, Boot = 2, Running = 3, Migrate = 4, SaveStop = 5, SaveSuspend = 6, SaveMigrate = 7,
    PrologMigrate = 8, PrologResume = 9, EpilogStop = 10, Epilog = 11, Shutdown = 12, Cancel = 13, Failure = 14,
    CleanupResubmit = 15, Unknown = 16, Hotplug = 17, ShutdownPoweroff = 18, BootUnknown = 19, BootPoweroff = 20,
    BootSuspended = 21, BootStopped = 22, CleanupDelete = 23, HotplugSnapshot = 24, HotplugNic = 25,
    HotplugSaveas = 26, HotplugSaveasPoweroff = 27, HotplugSaveasSuspended = 28, ShutdownUndeploy = 29,
    EpilogUndeploy = 30, PrologUndeploy = 31, BootUndeploy = 32, HotplugPrologPoweroff = 33,
    HotplugEpilogPoweroff = 34, BootMigrate = 35, BootFailure = 36, BootMigrateFailure = 37,
    PrologMigrateFailure = 38, PrologFailure = 39, EpilogFailure = 40, EpilogStopFailure = 41,
    EpilogUndeployFailure = 42, PrologMigratePoweroff = 43, PrologMigratePoweroffFailure = 44,
    PrologMigrateSuspend = 45, PrologMigrateSuspendFailure = 46, BootUndeployFailure = 47,
    BootStoppedFailure = 48, PrologResumeFailure = 49, PrologUndeployFailure = 50, DiskSnapshotPoweroff = 51,
    DiskSnapshotRevertPoweroff = 52, DiskSnapshotDeletePoweroff = 53, DiskSnapshotSuspended = 54,
    DiskSnapshotRevertSuspended = 55, DiskSnapshotDeleteSuspended = 56, DiskSnapshot = 57, DiskSnapshotRevert = 58,
    DiskSnapshotDelete = 59, PrologMigrateUnknown = 60, PrologMigrateUnknownFailure = 61, DiskResize = 62,
    DiskResizePoweroff = 63, DiskResizeUndeployed = 64, HotplugNicPoweroff = 65, HotplugResize = 66,
    HotplugSaveasUndeployed = 67, HotplugSaveasStopped = 68, Backup = 69, BackupPoweroff = 70, Restore = 71,
}

/// <summary>/IMAGE/STATE.</summary>
public enum ImageState
{
    Init = 0, Ready = 1, Used = 2, Disabled = 3, Locked = 4, Error = 5, Clone = 6, Delete = 7, UsedPers = 8,
    LockedUsed = 9, LockedUsedPers = 10,
}

/// <summary>/IMAGE/TYPE (written by name in templates).</summary>
public enum ImageType { Os = 0, Cdrom = 1, Datablock = 2, Kernel = 3, Ramdisk = 4, Context = 5, Backup = 6 }

public enum DatastoreType { Image = 0, System = 1, File = 2, Backup = 3 }

public enum HostState { Init = 0, Monitored = 2, Error = 3, Disabled = 4, Offline = 8 }

/// <summary>Where a VM stands for the next operation (docs/opennebula.md, "Settled states").</summary>
public enum VmSettlement
{
    /// <summary>RUNNING, or a settled non-active state (PENDING, HOLD, STOPPED, SUSPENDED, POWEROFF, UNDEPLOYED).</summary>
    Settled,

    /// <summary>An operation is under way: wait.</summary>
    Transient,

    /// <summary>Stuck in UNKNOWN or a *_FAILURE state: needs a human or one.vm.recover.</summary>
    Failed,

    /// <summary>DONE: the VM is gone.</summary>
    Gone,
}

public static class OneStateNames
{
    /// <summary>The name OpenNebula prints in its messages (state_str): the LCM name when ACTIVE.</summary>
    public static string Describe(VmState state, LcmState lcm) =>
        state == VmState.Active ? ToUpperSnake(lcm.ToString()) : ToUpperSnake(state.ToString());

    public static string Describe(ImageState state) => state switch
    {
        ImageState.UsedPers => "USED",
        ImageState.LockedUsed or ImageState.LockedUsedPers => "LOCKED",
        _ => ToUpperSnake(state.ToString()),
    };

    public static VmSettlement Settlement(VmState state, LcmState lcm)
    {
        switch (state)
        {
            case VmState.Done: return VmSettlement.Gone;
            case VmState.CloningFailure: return VmSettlement.Failed;
            case VmState.Init or VmState.Cloning: return VmSettlement.Transient;
            case VmState.Active:
                if (lcm == LcmState.Running) return VmSettlement.Settled;
                return IsFailureLcm(lcm) ? VmSettlement.Failed : VmSettlement.Transient;
            default:
                return lcm == LcmState.LcmInit ? VmSettlement.Settled : VmSettlement.Transient;
        }
    }

    private static bool IsFailureLcm(LcmState lcm) => lcm is LcmState.Unknown or LcmState.PrologMigrateFailure
        or LcmState.PrologMigratePoweroffFailure or LcmState.PrologMigrateUnknownFailure
        or (>= LcmState.BootFailure and <= LcmState.EpilogUndeployFailure)
        or (>= LcmState.PrologMigrateSuspendFailure and <= LcmState.PrologUndeployFailure);

    private static string ToUpperSnake(string pascal)
    {
        var sb = new System.Text.StringBuilder(pascal.Length + 8);
        for (var i = 0; i < pascal.Length; i++)
        {
            if (i > 0 && char.IsUpper(pascal[i])) sb.Append('_');
            sb.Append(char.ToUpperInvariant(pascal[i]));
        }
        return sb.ToString();
    }
}
