using Cronos;

namespace ProxyBackup.Scheduler;

/// <summary>
/// A cron expression (minute hour day-of-month month day-of-week, or @hourly/@daily/@weekly/
/// @monthly/@yearly) evaluated in a time zone, by Cronos: names (jan, mon), 0 or 7 for Sunday,
/// <c>L</c> (last day of the month, or <c>5L</c> the last Friday), <c>W</c> (nearest weekday) and
/// <c>#</c> (<c>1#2</c>, the second Monday). Daylight saving, as cron does it: a time that does not
/// exist (spring forward) runs at the end of the gap; a time that happens twice (fall back) runs
/// once, at its first occurrence, unless its minute or hour field is a wildcard, range or step
/// (<c>*/10 1 * * *</c>, <c>0 1-3 * * *</c>, <c>@hourly</c>), which fires in both. When both day fields are
/// given (anything but <c>*</c>), a day matches if either does, as the schedules written before
/// Cronos meant (Cronos alone wants both) (docs/operations.md, "Schedules").
/// </summary>
public sealed class CronSchedule
{
    private const string InvalidPrefix = "The given cron expression has an invalid format. ";
    // Cronos also knows @every_minute and @every_second: not backup schedules.
    private static readonly string[] Macros = ["@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"];
    private readonly CronExpression[] _expressions;

    private CronSchedule(string expression, TimeZoneInfo zone)
    {
        Expression = expression;
        Zone = zone;
        var fields = expression.Split((char[])[' ', '\t'], StringSplitOptions.RemoveEmptyEntries);
        if (fields is [var macro] && macro.StartsWith('@') && !Macros.Contains(macro.ToLowerInvariant()))
            throw new FormatException($"'{expression}': unknown macro (use {string.Join(", ", Macros)}).");
        if (fields is not [['@', ..]] && fields.Length != 5)
            throw new FormatException($"'{expression}': a schedule has 5 fields (minute hour day-of-month month day-of-week), e.g. '30 2 * * *' for 02:30 every day.");
        static bool Restricted(string field) => field is not "*" and not "?";
        string[] texts = fields.Length == 5 && Restricted(fields[2]) && Restricted(fields[4])
            ? [$"{fields[0]} {fields[1]} {fields[2]} {fields[3]} *", $"{fields[0]} {fields[1]} * {fields[3]} {fields[4]}"]
            : [string.Join(' ', fields)];
        try { _expressions = [.. texts.Select(t => CronExpression.Parse(t, CronFormat.Standard))]; }
        catch (MissingSeedException)
        {
            throw new FormatException($"'{expression}': H (a time chosen by hashing) is not supported; write the minute and hour, e.g. '17 2 * * *'.");
        }
        catch (CronFormatException e)
        {
            throw new FormatException($"'{expression}': {e.Message.Replace(InvalidPrefix, "", StringComparison.Ordinal).TrimEnd('.')}. " +
                "Write minute hour day-of-month month day-of-week, e.g. '30 2 * * *', '0 3 L * *' (the last day of each month) or '0 3 * * 1#1' (the first Monday).");
        }
        if (NextOrNull(NeverFiresCheckFrom) is null)
            throw new FormatException($"'{expression}': it never fires (no day of the chosen months matches, e.g. 30 February).");
    }

    // A fixed instant, so that parsing does not depend on the day: Cronos looks about a century ahead.
    private static readonly DateTimeOffset NeverFiresCheckFrom = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private DateTimeOffset? NextOrNull(DateTimeOffset after) =>
        _expressions.Select(e => e.GetNextOccurrence(after, Zone)).Where(n => n is not null).Min();

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

    /// <summary>The first time strictly after <paramref name="after"/> at which the schedule fires.</summary>
    public DateTimeOffset Next(DateTimeOffset after) =>
        NextOrNull(after) is { } next
            ? next.ToUniversalTime()
            : throw new InvalidOperationException($"'{Expression}' does not fire any more.");

    public override string ToString() => $"{Expression} ({Zone.Id})";
}
