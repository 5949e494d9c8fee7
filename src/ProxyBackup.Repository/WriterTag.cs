using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

/// <summary>
/// Names the process that writes a tmp file or a restore point that has no index yet, by what its
/// lock files record (pid, start time, boot id): once no lock of that process is left, it has
/// ended or died, and GC removes what it left half-written at once instead of after the grace
/// (docs/repository-format.md, "Garbage collection").
/// </summary>
internal static class WriterTag
{
    private const char Mark = 'w';

    /// <summary>This process's tag; null where the boot id cannot be read (nothing is tagged, the grace decides).</summary>
    public static string? Current { get; } = Of(Environment.ProcessId, ProcessOwner.Current.StartTicks, ProcessOwner.BootId);

    /// <summary>The tag of the process holding a lock; null for a lock that records no boot id.</summary>
    public static string? Of(RepositoryLock.LockInfo info) => Of(info.Pid, info.ProcessStart, info.Boot);

    private static string? Of(int pid, long start, string? boot) => boot is null ? null : $"{Mark}{pid}-{start}-{boot}";

    /// <summary>The tag in a tmp file's name (<c>NAME.TAG.GUID</c>), or null for an untagged one.</summary>
    public static string? InTmpName(string fileName)
    {
        var parts = fileName.Split('.');
        return parts.Length >= 3 && parts[^2].StartsWith(Mark) ? parts[^2] : null;
    }
}
