using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

/// <summary>
/// Names the process that writes a tmp file or a restore point that has no index yet, by what its
/// lock files record (pid, start time, boot id): once no lock of that process is left, it has
/// ended or died, and GC removes what it left half-written at once instead of after the grace
/// (docs/repository-format.md, "Garbage collection").
/// </summary>
internal static partial class WriterTag
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
        return parts.Length >= 3 ? Parse(parts[^2]) : null;
    }

    /// <summary>
    /// A tag as written (<c>w&lt;pid&gt;-&lt;start&gt;-&lt;boot id&gt;</c>); null for anything else, such as
    /// an empty <c>writer</c> file a crash left: then only GC's cutoff decides.
    /// </summary>
    public static string? Parse(string? text) => text?.Trim() is { } tag && TagPattern().IsMatch(tag) ? tag : null;

    [System.Text.RegularExpressions.GeneratedRegex("^w[0-9]+-[0-9]+-[0-9a-f-]{36}$")]
    private static partial System.Text.RegularExpressions.Regex TagPattern();
}
