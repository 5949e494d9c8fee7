using System.Globalization;

namespace ProxyBackup.Scheduler;

/// <summary>
/// A cron expression (minute hour day-of-month month day-of-week, or @hourly/@daily/@weekly/
/// @monthly/@yearly) evaluated in a time zone. No cron package is reachable here, so this one is
/// small and tested on its own. Rules, as Vixie cron: names (jan, mon) and 0 or 7 for Sunday are
/// accepted; when both day fields are restricted, a day matches if either does. Daylight saving:
/// a time that does not exist (spring forward) runs at the first minute after the gap; a time that
/// happens twice (fall back) runs once, at its first occurrence.
/// </summary>
public sealed class CronSchedule
{
    private static readonly string[] MonthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    private static readonly string[] DayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

    private readonly bool[] _minutes = new bool[60];
    private readonly bool[] _hours = new bool[24];
    private readonly bool[] _days = new bool[32];
    private readonly bool[] _months = new bool[13];
    private readonly bool[] _weekdays = new bool[7];
    private readonly bool _dayRestricted;
    private readonly bool _weekdayRestricted;

    private CronSchedule(string expression, TimeZoneInfo zone)
    {
        Expression = expression;
        Zone = zone;
        var text = expression.Trim().ToLowerInvariant() switch
        {
            "@hourly" => "0 * * * *",
            "@daily" or "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@yearly" or "@annually" => "0 0 1 1 *",
            var t when t.StartsWith('@') => throw new FormatException($"'{expression}': unknown macro (use @hourly, @daily, @weekly, @monthly or @yearly)."),
            var t => t,
        };
        var fields = text.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (fields.Length != 5)
            throw new FormatException($"'{expression}': a schedule has 5 fields (minute hour day-of-month month day-of-week), e.g. '30 2 * * *' for 02:30 every day.");
        Parse(fields[0], "minute", 0, 59, null, _minutes);
        Parse(fields[1], "hour", 0, 23, null, _hours);
        Parse(fields[2], "day of month", 1, 31, null, _days);
        Parse(fields[3], "month", 1, 12, MonthNames, _months);
        var weekdays = new bool[8];
        Parse(fields[4], "day of week", 0, 7, DayNames, weekdays);
        for (var i = 0; i < 7; i++) _weekdays[i] = weekdays[i];
        if (weekdays[7]) _weekdays[0] = true; // 7 is Sunday too
        _dayRestricted = fields[2] != "*";
        _weekdayRestricted = fields[4] != "*";
        if (!Enumerable.Range(1, 12).Any(m => _months[m] && Enumerable.Range(1, DateTime.DaysInMonth(2024, m)).Any(d => _days[d])) && !_weekdayRestricted)
            throw new FormatException($"'{expression}': no day of the chosen months matches (e.g. 30 February).");
    }

    public string Expression { get; }
    public TimeZoneInfo Zone { get; }

    public static CronSchedule Parse(string expression, TimeZoneInfo? zone = null) => new(expression, zone ?? TimeZoneInfo.Local);

    public static bool TryParse(string expression, TimeZoneInfo? zone, out CronSchedule? schedule, out string? error)
    {
        try
        {
            schedule = Parse(expression, zone);
            error = null;
            return true;
        }
        catch (FormatException e)
        {
            schedule = null;
            error = e.Message;
            return false;
        }
    }

    private void Parse(string field, string name, int min, int max, string[]? names, bool[] set)
    {
        foreach (var part in field.Split(','))
        {
            var (range, step) = part.Split('/') switch
            {
                [var r] => (r, 1),
                [var r, var s] when int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 => (r, n),
                _ => throw new FormatException($"'{Expression}': bad step in the {name} field ('{part}')."),
            };
            int from, to;
            if (range == "*") (from, to) = (min, max);
            else if (range.Split('-') is [var a, var b]) (from, to) = (Value(a, name, min, max, names), Value(b, name, min, max, names));
            else
            {
                from = Value(range, name, min, max, names);
                to = part.Contains('/') ? max : from; // "5/15" means 5, 20, 35, 50
            }
            if (from > to) throw new FormatException($"'{Expression}': the range {range} of the {name} field runs backwards.");
            for (var v = from; v <= to; v += step) set[v] = true;
        }
    }

    private int Value(string text, string name, int min, int max, string[]? names)
    {
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var v))
        {
            if (v < min || v > max) throw new FormatException($"'{Expression}': {v} is outside the {name} field's {min}-{max}.");
            return v;
        }
        var index = names is null ? -1 : Array.IndexOf(names, text);
        if (index < 0) throw new FormatException($"'{Expression}': '{text}' is not a valid {name}.");
        return names == MonthNames ? index + 1 : index;
    }

    private bool DayMatches(DateTime local)
    {
        var dom = _days[local.Day];
        var dow = _weekdays[(int)local.DayOfWeek];
        if (_dayRestricted && _weekdayRestricted) return dom || dow;
        return dom && dow;
    }

    /// <summary>The first time strictly after <paramref name="after"/> at which the schedule fires.</summary>
    public DateTimeOffset Next(DateTimeOffset after)
    {
        var afterUtc = after.UtcDateTime;
        var local = TimeZoneInfo.ConvertTimeFromUtc(afterUtc, Zone);
        local = new DateTime(local.Year, local.Month, local.Day, local.Hour, local.Minute, 0, DateTimeKind.Unspecified).AddMinutes(1);
        var limit = local.AddYears(5);
        while (local < limit)
        {
            if (!_months[local.Month]) { local = new DateTime(local.Year, local.Month, 1).AddMonths(1); continue; }
            if (!DayMatches(local)) { local = local.Date.AddDays(1); continue; }
            if (!_hours[local.Hour]) { local = local.Date.AddHours(local.Hour + 1); continue; }
            if (!_minutes[local.Minute]) { local = local.AddMinutes(1); continue; }
            DateTime utc;
            if (Zone.IsInvalidTime(local))
            {
                var end = local;
                while (Zone.IsInvalidTime(end)) end = end.AddMinutes(1);
                utc = TimeZoneInfo.ConvertTimeToUtc(end, Zone);
            }
            else if (Zone.IsAmbiguousTime(local))
            {
                utc = DateTime.SpecifyKind(local - Zone.GetAmbiguousTimeOffsets(local).Max(), DateTimeKind.Utc);
            }
            else
            {
                utc = TimeZoneInfo.ConvertTimeToUtc(local, Zone);
            }
            if (utc > afterUtc) return new DateTimeOffset(utc, TimeSpan.Zero);
            local = local.AddMinutes(1);
        }
        throw new InvalidOperationException($"'{Expression}' does not fire within five years.");
    }

    public override string ToString() => $"{Expression} ({Zone.Id})";
}
