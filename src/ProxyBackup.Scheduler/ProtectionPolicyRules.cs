using System.Text.RegularExpressions;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Scheduler;

/// <summary>What a <see cref="ProtectionPolicy"/> means: its compiled schedule, its problems, which VMs it selects.</summary>
public static class ProtectionPolicyRules
{
    public static bool IsValidName(string name) => Regex.IsMatch(name, "^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$");

    public static CronSchedule CompiledSchedule(this ProtectionPolicy policy) => CronSchedule.Parse(policy.Schedule, Zone(policy));

    private static TimeZoneInfo Zone(ProtectionPolicy policy)
    {
        try { return TimeZoneInfo.FindSystemTimeZoneById(policy.TimeZone); }
        catch (TimeZoneNotFoundException) { throw new PolicyException(policy.Name, $"time zone '{policy.TimeZone}' is unknown (use an IANA name such as Europe/Berlin or UTC)"); }
    }

    /// <summary>Every problem at once, each naming the field and what is expected.</summary>
    public static IReadOnlyList<string> Problems(this ProtectionPolicy policy)
    {
        var p = new List<string>();
        if (!IsValidName(policy.Name)) p.Add("name: 1-64 letters, digits, space, '.', '_' or '-'");
        try { policy.CompiledSchedule(); }
        catch (FormatException e) { p.Add($"schedule: {e.Message}"); }
        catch (PolicyException e) { p.Add(e.Problem); }
        if (policy.Window is { } w && w <= TimeSpan.Zero) p.Add("window: a positive duration (e.g. 4h) or none");
        var selection = policy.Selection;
        if (selection.IsEmpty) p.Add("selection: at least one of VM IDs or names, name pattern, label, or attribute=value");
        if (selection.AttributeName is not null && !Regex.IsMatch(selection.AttributeName, "^[A-Za-z0-9_]+$")) p.Add("selection attribute: a template attribute name ([A-Za-z0-9_])");
        if (policy.ExcludeDisks.Any(d => d < 0)) p.Add("exclude disks: DISK_IDs are 0 or more");
        if (policy.FullEveryRuns < 0 || policy.FullEveryDays < 0) p.Add("full every: 0 or more");
        if (policy.Retries is < 0 or > 10) p.Add("retries: 0 to 10");
        if (policy.Consistency.CommandTimeoutSeconds is < 1 or > 3600) p.Add("hook timeout: 1 to 3600 seconds");
        if (policy.Drill.Schedule is { } drill)
        {
            try { CronSchedule.Parse(drill, Zone(policy)); }
            catch (FormatException e) { p.Add($"drill schedule: {e.Message}"); }
            catch (PolicyException) { } // the time zone's problem is told above
        }
        try { policy.Retention.Validate(); }
        catch (ArgumentException e) { p.Add($"retention: {e.Message}"); }
        return p;
    }

    public static void Validate(this ProtectionPolicy policy)
    {
        var problems = policy.Problems();
        if (problems.Count > 0) throw new PolicyException(policy.Name, string.Join("; ", problems));
    }

    /// <summary>Saves a valid policy; an invalid one is refused whole, naming every problem, and nothing is written.</summary>
    public static void Save(IPolicyStore store, ProtectionPolicy policy)
    {
        policy.Validate();
        store.SavePolicy(policy);
    }

    /// <summary>Enabled and valid: what the daemon runs (a stored policy an older release saved may no longer be valid).</summary>
    public static bool Runs(this ProtectionPolicy policy) => policy.Enabled && policy.Problems().Count == 0;

    /// <summary>The next run of each policy that <see cref="Runs"/>, soonest first.</summary>
    public static IReadOnlyList<(string Policy, DateTimeOffset At)> NextRuns(IEnumerable<ProtectionPolicy> policies, DateTimeOffset after) =>
        [.. policies.Where(Runs).Select(p => (p.Name, p.CompiledSchedule().Next(after))).OrderBy(n => n.Item2)];

    public static bool Matches(this VmSelection selection, VirtualMachine vm)
    {
        if (selection.VmIds.Contains(vm.Id) || selection.VmNames.Contains(vm.Name, StringComparer.Ordinal)) return true;
        if (selection.NamePattern is { } glob && Regex.IsMatch(vm.Name, "^" + Regex.Escape(glob).Replace("\\*", ".*", StringComparison.Ordinal).Replace("\\?", ".", StringComparison.Ordinal) + "$")) return true;
        if (selection.Label is { } label && vm.Labels.Contains(label, StringComparer.OrdinalIgnoreCase)) return true;
        if (selection.AttributeName is { } attr)
        {
            var value = vm.UserTemplate.Text(attr) ?? vm.Template.Text(attr);
            if (value is not null && (selection.AttributeValue is null || string.Equals(value, selection.AttributeValue, StringComparison.OrdinalIgnoreCase))) return true;
        }
        return false;
    }
}

public sealed class PolicyException(string policy, string problem) : UserFacingException($"Policy '{policy}': {problem}.")
{
    public string Problem { get; } = problem;
}
