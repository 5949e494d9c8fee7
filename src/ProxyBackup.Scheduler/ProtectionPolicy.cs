using System.Text.RegularExpressions;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;

namespace ProxyBackup.Scheduler;

/// <summary>
/// Which VMs, when, how and for how long (brief, "Protect"). Validated as a whole: an invalid
/// policy is refused where it is entered, never saved half-valid.
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

    public static bool IsValidName(string name) => Regex.IsMatch(name, "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$");

    public CronSchedule CompiledSchedule() => CronSchedule.Parse(Schedule, Zone());

    private TimeZoneInfo Zone()
    {
        try { return TimeZoneInfo.FindSystemTimeZoneById(TimeZone); }
        catch (TimeZoneNotFoundException) { throw new PolicyException(Name, $"time zone '{TimeZone}' is unknown (use an IANA name such as Europe/Berlin or UTC)"); }
    }

    /// <summary>Every problem at once, each naming the field and what is expected.</summary>
    public IReadOnlyList<string> Problems()
    {
        var p = new List<string>();
        if (!IsValidName(Name)) p.Add("name: 1-64 letters, digits, space, '.', '_' or '-'");
        try { CompiledSchedule(); }
        catch (FormatException e) { p.Add($"schedule: {e.Message}"); }
        catch (PolicyException e) { p.Add(e.Problem); }
        if (Window is { } w && w <= TimeSpan.Zero) p.Add("window: a positive duration (e.g. 4h) or none");
        if (Selection.IsEmpty) p.Add("selection: at least one of VM IDs, name pattern, label, or attribute=value");
        if (Selection.AttributeName is not null && !Regex.IsMatch(Selection.AttributeName, "^[A-Za-z0-9_]+$")) p.Add("selection attribute: a template attribute name ([A-Za-z0-9_])");
        if (ExcludeDisks.Any(d => d < 0)) p.Add("exclude disks: DISK_IDs are 0 or more");
        if (FullEveryRuns < 0 || FullEveryDays < 0) p.Add("full every: 0 or more");
        if (Retries is < 0 or > 10) p.Add("retries: 0 to 10");
        try { Retention.Validate(); }
        catch (ArgumentException e) { p.Add($"retention: {e.Message}"); }
        return p;
    }

    public void Validate()
    {
        var problems = Problems();
        if (problems.Count > 0) throw new PolicyException(Name, string.Join("; ", problems));
    }
}

/// <summary>A VM is selected when it matches any criterion given: ID, name pattern, label, or USER_TEMPLATE attribute.</summary>
public sealed record VmSelection
{
    public IReadOnlyList<int> VmIds { get; init; } = [];

    /// <summary>Glob on the VM name: * any run of characters, ? one character.</summary>
    public string? NamePattern { get; init; }
    public string? Label { get; init; }
    public string? AttributeName { get; init; }
    public string? AttributeValue { get; init; }

    public bool IsEmpty => VmIds.Count == 0 && NamePattern is null && Label is null && AttributeName is null;

    public bool Matches(VirtualMachine vm)
    {
        if (VmIds.Contains(vm.Id)) return true;
        if (NamePattern is { } glob && Regex.IsMatch(vm.Name, "^" + Regex.Escape(glob).Replace("\\*", ".*", StringComparison.Ordinal).Replace("\\?", ".", StringComparison.Ordinal) + "$")) return true;
        if (Label is { } label && vm.Labels.Contains(label, StringComparer.OrdinalIgnoreCase)) return true;
        if (AttributeName is { } attr)
        {
            var value = vm.UserTemplate.Text(attr) ?? vm.Template.Text(attr);
            if (value is not null && (AttributeValue is null || string.Equals(value, AttributeValue, StringComparison.OrdinalIgnoreCase))) return true;
        }
        return false;
    }
}

public sealed class PolicyException(string policy, string problem) : Exception($"Policy '{policy}': {problem}.")
{
    public string Problem { get; } = problem;
}
