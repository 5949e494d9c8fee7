using System.Globalization;
using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

public sealed record RetentionDecision(RestorePoint Point, bool Keep, IReadOnlyList<string> Reasons);

public static class Retention
{
    /// <summary>Decides per source (each source's points are judged among themselves), newest first.</summary>
    public static IReadOnlyList<RetentionDecision> Plan(IEnumerable<RestorePoint> points, RetentionPolicy policy, DateTimeOffset now, TimeZoneInfo? zone = null)
    {
        policy.Validate();
        zone ??= TimeZoneInfo.Local;
        var result = new List<RetentionDecision>();
        foreach (var group in points.GroupBy(p => p.Source))
        {
            var ordered = group.OrderByDescending(p => p.Time).ThenByDescending(p => p.Id, StringComparer.Ordinal).ToList();
            var reasons = ordered.ToDictionary(p => p.Id, _ => new List<string>());
            if (policy.IsEmpty)
                foreach (var p in ordered) reasons[p.Id].Add("no retention policy");
            foreach (var p in ordered.Take(policy.KeepLast)) reasons[p.Id].Add("last");
            if (policy.KeepWithin is { } within)
                foreach (var p in ordered.Where(p => now - p.Time <= within)) reasons[p.Id].Add($"within {within}");
            Bucket(ordered, policy.KeepDaily, "daily", t => t.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture), zone, reasons);
            Bucket(ordered, policy.KeepWeekly, "weekly", t => $"{ISOWeek.GetYear(t)}-W{ISOWeek.GetWeekOfYear(t)}", zone, reasons);
            Bucket(ordered, policy.KeepMonthly, "monthly", t => t.ToString("yyyy-MM", CultureInfo.InvariantCulture), zone, reasons);
            Bucket(ordered, policy.KeepYearly, "yearly", t => t.ToString("yyyy", CultureInfo.InvariantCulture), zone, reasons);
            result.AddRange(ordered.Select(p => new RetentionDecision(p, reasons[p.Id].Count > 0, reasons[p.Id])));
        }
        return result;
    }

    /// <summary>Keeps the newest restore point of each of the newest <paramref name="count"/> periods.</summary>
    private static void Bucket(List<RestorePoint> newestFirst, int count, string name, Func<DateTime, string> period, TimeZoneInfo zone, Dictionary<string, List<string>> reasons)
    {
        if (count <= 0) return;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var p in newestFirst)
        {
            var key = period(TimeZoneInfo.ConvertTime(p.Time, zone).DateTime);
            if (!seen.Add(key)) continue;
            reasons[p.Id].Add($"{name} {key}");
            if (seen.Count == count) return;
        }
    }
}
