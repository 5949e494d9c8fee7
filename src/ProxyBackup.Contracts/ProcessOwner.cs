using System.Globalization;

namespace ProxyBackup.Contracts;

/// <summary>
/// A process that owns something (a lock, a cloud object, a job): its host, pid and start time
/// (field 22 of /proc/PID/stat), so that a reused pid is not taken for the owner. <paramref name="Boot"/>
/// is the kernel boot id its lease recorded (null: none known): proxies cloned from one image share a
/// host name, so only the boot id says whether a pid is this machine's.
/// </summary>
public sealed record ProcessOwner(string Host, int Pid, long StartTicks, string? Boot = null)
{
    // Lazy: static initializers run in textual order, and this one needs BootId below.
    private static readonly Lazy<ProcessOwner> CurrentOwner = new(() => new(Environment.MachineName, Environment.ProcessId, StartTicksOf(Environment.ProcessId) ?? 0, BootId));

    public static ProcessOwner Current => CurrentOwner.Value;

    public bool IsCurrent => Host == Current.Host && Pid == Current.Pid && StartTicks == Current.StartTicks && (Boot is null || Boot == Current.Boot);

    /// <summary>How long an owner on another host counts as alive after it last renewed its lease (it renews every <see cref="LeaseRenewal"/>).</summary>
    public static readonly TimeSpan Lease = TimeSpan.FromMinutes(2);

    public static readonly TimeSpan LeaseRenewal = TimeSpan.FromSeconds(30);

    /// <summary>Whether this machine runs process <paramref name="pid"/> started at <paramref name="startTicks"/> (0: any start).</summary>
    public static bool IsRunning(int pid, long startTicks) => StartTicksOf(pid) is { } start && (startTicks == 0 || start == startTicks);

    /// <summary>
    /// Whether a process that owns catalog records may still run: on this machine by its pid, on
    /// another (proxies sharing a catalog) by the lease it renews in the catalog
    /// (docs/architecture.md, "Every cloud object has an owner"). This machine is the one of this
    /// boot id when the lease recorded one, else (older records) the one of this host name.
    /// </summary>
    public bool MayBeAlive(DateTimeOffset? leaseRenewed, DateTimeOffset now) =>
        (Boot is null ? Host == Environment.MachineName : Boot == BootId) ? IsRunning(Pid, StartTicks) : leaseRenewed is { } renewed && now - renewed < Lease;

    /// <summary>
    /// Whether the process <paramref name="pid"/> started at <paramref name="startTicks"/> still runs,
    /// where its pid can tell: only under this machine's running kernel (the same boot id) and in this
    /// pid namespace (null: recorded before namespaces were). Null where it cannot tell (another
    /// machine, even one of this host name; an earlier boot): the caller's lease or refresh time decides
    /// (docs/repository-format.md, "Lock files").
    /// </summary>
    public static bool? RunsHere(int pid, long startTicks, string? boot, string? pidNamespace) =>
        boot is null || boot != BootId || (pidNamespace is not null && pidNamespace != PidNamespace) ? null : IsRunning(pid, startTicks);

    public override string ToString() => $"pid {Pid} on {Host}";

    /// <summary>
    /// The running kernel's random boot id (/proc/sys/kernel/random/boot_id): a pid means this
    /// machine's process only where the boot id is this one's. Host names do not tell machines
    /// apart (appliance clones keep the image's), nor one boot from the next.
    /// </summary>
    public static string? BootId { get; } = ReadBootId();

    /// <summary>
    /// This process's pid namespace (<c>pid:[inode]</c>): containers on one kernel share its boot id,
    /// and a pid means this process's neighbour only within the same namespace.
    /// </summary>
    public static string? PidNamespace { get; } = ReadPidNamespace();

    private static string? ReadPidNamespace()
    {
        try { return new FileInfo("/proc/self/ns/pid").LinkTarget; }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    private static string? ReadBootId()
    {
        try { return File.ReadAllText("/proc/sys/kernel/random/boot_id").Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return null; }
    }

    /// <summary>The process's start time in clock ticks since boot, or null when there is no such process.</summary>
    public static long? StartTicksOf(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[19], CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or IndexOutOfRangeException)
        {
            return null;
        }
    }
}
