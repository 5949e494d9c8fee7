using ProxyBackup.Repository;
using ProxyBackup.Contracts;

namespace ProxyBackup.Scheduler;

/// <summary>A policy's scheduled run: the slot it belongs to, and until when VMs may start.</summary>
public sealed record DueRun(ProtectionPolicy Policy, DateTimeOffset Slot, DateTimeOffset? StartNoLaterThan);

/// <summary>
/// Decides which policy runs are due. Slots missed while the appliance was down collapse into one
/// run (the latest slot), not one per missed slot; a slot whose backup window is already over is
/// skipped and reported.
/// </summary>
public static class RunPlanner
{
    /// <param name="lastSlots">The last slot handled per policy name; a policy never run starts from <paramref name="since"/>.</param>
    public static (IReadOnlyList<DueRun> Due, IReadOnlyList<(ProtectionPolicy Policy, DateTimeOffset Slot)> Skipped) Plan(
        IEnumerable<ProtectionPolicy> policies, IReadOnlyDictionary<string, DateTimeOffset> lastSlots, DateTimeOffset since, DateTimeOffset now)
    {
        var due = new List<DueRun>();
        var skipped = new List<(ProtectionPolicy, DateTimeOffset)>();
        foreach (var policy in policies.Where(p => p.Enabled))
        {
            var schedule = policy.CompiledSchedule();
            var from = lastSlots.TryGetValue(policy.Name, out var last) ? last : since;
            DateTimeOffset? latest = null;
            for (var slot = schedule.Next(from); slot <= now; slot = schedule.Next(slot)) latest = slot;
            if (latest is not { } s) continue;
            var deadline = policy.Window is { } w ? s + w : (DateTimeOffset?)null;
            if (deadline is { } d && d < now) skipped.Add((policy, s));
            else due.Add(new DueRun(policy, s, deadline));
        }
        return ([.. due.OrderByDescending(d => d.Policy.Priority).ThenBy(d => d.Slot)], skipped);
    }

    /// <summary>Whether this VM's next backup under the policy is a full one, from its restore points (oldest first).</summary>
    public static bool NeedsFull(ProtectionPolicy policy, IReadOnlyList<RestorePoint> points, DateTimeOffset now)
    {
        var lastFull = points.Count - 1;
        while (lastFull >= 0 && points[lastFull].Tags.GetValueOrDefault("kind") != "full") lastFull--;
        if (lastFull < 0) return true;
        if (policy.FullEveryDays > 0 && now - points[lastFull].Time >= TimeSpan.FromDays(policy.FullEveryDays)) return true;
        // The backup about to run is the (count - lastFull)th since the last full one.
        return policy.FullEveryRuns > 0 && points.Count - lastFull >= policy.FullEveryRuns;
    }
}
