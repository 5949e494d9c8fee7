namespace ProxyBackup.Contracts;

/// <summary>What a job creates on the cloud, and so what a cleanup may have to remove.</summary>
public enum CloudObjectKind
{
    /// <summary>A disk snapshot of a protected VM (VmId, DiskId, ObjectId = snapshot id, Name).</summary>
    DiskSnapshot,

    /// <summary>An image the job saved or allocated (ObjectId = image id, Name).</summary>
    Image,

    /// <summary>An image attached to the proxy VM (VmId = proxy, ObjectId = the attached image id).</summary>
    Attachment,

    /// <summary>A VM template allocated for a restore (ObjectId = template id, Name).</summary>
    Template,

    /// <summary>A protected VM the job suspended for its snapshot set (VmId, Name): removing it means resuming the VM.</summary>
    SuspendedVm,

    /// <summary>
    /// A disk an in-place restore detached from a VM (VmId, DiskId, Name = the original DISK as a
    /// template, ObjectId = the image that holds its content now): removing it means attaching that
    /// image back (docs/operations.md, "In-place restore").
    /// </summary>
    DetachedDisk,

    /// <summary>A VM a drill made in its sandbox (VmId = the drilled VM, ObjectId = the sandbox VM, Name): removing it means terminating it.</summary>
    SandboxVm,
}

/// <summary>
/// One line of the journal: written before the call that creates the object, completed with its id
/// after. <paramref name="Owner"/> is the process whose job created it (null: written by a version
/// that did not record owners); <paramref name="OwnerLeaseRenewed"/> when that process last renewed its lease.
/// </summary>
public sealed record JournalEntry(long Id, string JobId, CloudObjectKind Kind, int VmId, int DiskId, string Name, int? ObjectId, DateTimeOffset Created,
    ProcessOwner? Owner = null, DateTimeOffset? OwnerLeaseRenewed = null);

/// <summary>
/// The cleanup journal. Intent is recorded before each creating call (with a unique name, so that
/// an object whose id was never learned, because the process died with the call in flight, can
/// still be found by name). Entries leave the journal when the object is gone, or kept on purpose.
/// </summary>
public interface ICloudJournal
{
    long Record(string jobId, CloudObjectKind kind, int vmId, int diskId, string name);
    void SetObjectId(long entryId, int objectId);
    void Remove(long entryId);
    IReadOnlyList<JournalEntry> Pending(string? jobId = null);
}

/// <summary>Keeps two jobs off one VM (OpenNebula's own lock would also block the appliance's calls).</summary>
public interface IVmGuard
{
    /// <summary>Takes the VM for a job, or throws <see cref="VmBusyException"/> naming the job that holds it.</summary>
    IDisposable Acquire(int vmId, string jobId, string what);
}

public sealed class VmBusyException(string message) : UserFacingException(message);
