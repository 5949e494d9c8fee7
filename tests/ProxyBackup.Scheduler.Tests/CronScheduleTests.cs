namespace ProxyBackup.Scheduler.Tests;

public class CronScheduleTests
{
    private static readonly TimeZoneInfo Utc = TimeZoneInfo.Utc;
    private static readonly TimeZoneInfo Berlin = TimeZoneInfo.FindSystemTimeZoneById("Europe/Berlin");
    private static readonly TimeZoneInfo NewYork = TimeZoneInfo.FindSystemTimeZoneById("America/New_York");

    private static DateTimeOffset U(int y, int mo, int d, int h, int mi) => new(y, mo, d, h, mi, 0, TimeSpan.Zero);

    private static List<DateTimeOffset> Fires(string expr, TimeZoneInfo zone, DateTimeOffset from, int count)
    {
        var s = CronSchedule.Parse(expr, zone);
        var list = new List<DateTimeOffset>();
        var t = from;
        for (var i = 0; i < count; i++) list.Add(t = s.Next(t));
        return list;
    }

    [Theory]
    [InlineData("30 2 * * *", "2026-11-21T21:00Z", "2026-11-22T02:30Z")]
    [InlineData("*/15 * * * *", "2026-11-21T21:07Z", "2026-11-21T21:15Z")]
    [InlineData("5/20 * * * *", "2026-11-21T21:06Z", "2026-11-21T21:25Z")]
    [InlineData("0 9-17/4 * * *", "2026-11-21T09:00Z", "2026-11-21T13:00Z")]
    [InlineData("0 0 * * mon-fri", "2026-11-21T12:00Z", "2026-11-23T00:00Z")]   // Saturday → Monday
    [InlineData("0 0 * * 7", "2026-11-21T12:00Z", "2026-11-22T00:00Z")]         // 7 = Sunday
    [InlineData("0 0 1,15 * *", "2026-11-02T00:00Z", "2026-11-15T00:00Z")]
    [InlineData("0 0 31 * *", "2026-11-01T00:00Z", "2026-12-31T00:00Z")]         // November has no 31st
    [InlineData("0 0 29 feb *", "2026-03-01T00:00Z", "2028-02-29T00:00Z")]       // next leap year
    [InlineData("0 12 13 * fri", "2026-11-01T00:00Z", "2026-11-06T12:00Z")]      // day-of-month OR day-of-week
    [InlineData("@daily", "2026-11-21T00:00Z", "2026-11-22T00:00Z")]
    [InlineData("@weekly", "2026-11-21T00:00Z", "2026-11-22T00:00Z")]
    [InlineData("@monthly", "2026-11-21T00:00Z", "2026-12-01T00:00Z")]
    [InlineData("@yearly", "2026-11-21T00:00Z", "2027-01-01T00:00Z")]
    [InlineData("@hourly", "2026-11-21T21:00Z", "2026-11-21T22:00Z")]
    [InlineData("0 0 * JAN,Jul *", "2026-11-21T00:00Z", "2027-01-01T00:00Z")]
    [InlineData("0 3 L * *", "2026-11-21T00:00Z", "2026-11-30T03:00Z")]          // the last day of the month
    [InlineData("0 3 L feb *", "2027-01-01T00:00Z", "2027-02-28T03:00Z")]
    [InlineData("0 3 L-2 * *", "2026-11-21T00:00Z", "2026-11-28T03:00Z")]        // two days before the last
    [InlineData("0 3 * * 5L", "2026-11-21T00:00Z", "2026-11-27T03:00Z")]         // the last Friday
    [InlineData("0 3 * * 1#2", "2026-11-21T00:00Z", "2026-12-14T03:00Z")]        // the second Monday
    [InlineData("0 3 15W * *", "2026-11-21T00:00Z", "2026-12-15T03:00Z")]        // the weekday nearest the 15th
    [InlineData("0 3 14W * *", "2026-11-01T00:00Z", "2026-11-13T03:00Z")]        // the 14th is a Saturday: Friday
    [InlineData("0 3 L * 1#1", "2026-11-03T00:00Z", "2026-11-30T03:00Z")]        // either day field: the last day ...
    [InlineData("0 3 L * 1#1", "2026-11-30T04:00Z", "2026-12-07T03:00Z")]        // ... or the first Monday
    [InlineData("0 22-2 * * *", "2026-11-21T23:30Z", "2026-11-22T00:00Z")]       // a range across midnight
    [InlineData("0 12 */2 * fri", "2026-11-01T00:00Z", "2026-11-01T12:00Z")]     // both day fields given: either (the 1st) ...
    [InlineData("0 12 */2 * fri", "2026-11-01T12:00Z", "2026-11-03T12:00Z")]     // ... the 3rd, odd days ...
    [InlineData("0 12 */2 * fri", "2026-11-05T12:00Z", "2026-11-06T12:00Z")]     // ... or a Friday (the 6th)
    public void Next_fire_time(string expr, string after, string expected) =>
        Assert.Equal(DateTimeOffset.Parse(expected, System.Globalization.CultureInfo.InvariantCulture),
            CronSchedule.Parse(expr, Utc).Next(DateTimeOffset.Parse(after, System.Globalization.CultureInfo.InvariantCulture)));

    [Fact]
    public void Spring_forward_runs_once_right_after_the_gap()
    {
        // Berlin, 2026-03-29: 02:00 local jumps to 03:00 (01:00 UTC).
        var fires = Fires("30 2 * * *", Berlin, U(2026, 3, 28, 12, 0), 2);
        Assert.Equal(U(2026, 3, 29, 1, 0), fires[0]);   // 03:00 CEST, the first minute after the gap
        Assert.Equal(U(2026, 3, 30, 0, 30), fires[1]);  // 02:30 CEST the day after
    }

    [Fact]
    public void Fall_back_runs_a_repeated_time_once()
    {
        // New York, 2026-11-01: 02:00 EDT goes back to 01:00 EST; 01:30 happens twice.
        var fires = Fires("30 1 * * *", NewYork, U(2026, 10, 31, 12, 0), 2);
        Assert.Equal(U(2026, 11, 1, 5, 30), fires[0]);  // 01:30 EDT, the first occurrence
        Assert.Equal(U(2026, 11, 2, 6, 30), fires[1]);  // 01:30 EST the next day, not 01:30 EST the same night
        // One that repeats within the hour keeps its pace through both 01:00-01:59, as cron runs its wildcard jobs.
        var everyTen = Fires("*/10 1 * * *", NewYork, U(2026, 11, 1, 4, 59), 13);
        Assert.Equal(12, everyTen.Count(f => f.UtcDateTime.Date == new DateTime(2026, 11, 1)));  // 01:00..01:50 EDT, then EST
        Assert.Equal(U(2026, 11, 1, 6, 50), everyTen[11]);
        Assert.Equal(U(2026, 11, 2, 6, 0), everyTen[12]);
        // So does a range of hours: 01:00 EDT and 01:00 EST.
        var range = Fires("0 1-3 * * *", NewYork, U(2026, 11, 1, 4, 0), 3);
        Assert.Equal([U(2026, 11, 1, 5, 0), U(2026, 11, 1, 6, 0), U(2026, 11, 1, 7, 0)], range);
    }

    [Fact]
    public void A_local_schedule_follows_the_zone_across_the_change()
    {
        var fires = Fires("0 3 * * *", Berlin, U(2026, 10, 24, 0, 0), 2);
        Assert.Equal(U(2026, 10, 24, 1, 0), fires[0]); // CEST, UTC+2
        Assert.Equal(U(2026, 10, 25, 2, 0), fires[1]); // CET, UTC+1
    }

    [Theory]
    [InlineData("* * * *", "5 fields")]
    [InlineData("60 * * * *", "Minutes: Value must be a number between 0 and 59")]
    [InlineData("* 24 * * *", "Hours: Value must be a number between 0 and 23")]
    [InlineData("* * 0 * *", "Days of month: Value must be a number between 1 and 31")]
    [InlineData("* * * 13 *", "Months: Value must be a number between 1 and 12")]
    [InlineData("* * * * 8", "Days of week: Value must be a number between 0 and 7")]
    [InlineData("*/0 * * * *", "Minutes: Value must be a number between 1 and 59")]
    [InlineData("* * * foo *", "Months:")]
    [InlineData("0 3 * * 1#6", "Days of week:")]
    [InlineData("@sometimes", "unknown macro")]
    [InlineData("@every_second", "unknown macro")]
    [InlineData("H 2 * * *", "H (a time chosen by hashing) is not supported")]
    [InlineData("0 0 30 feb *", "never fires")]
    public void Invalid_expressions_say_what_is_wrong(string expr, string message)
    {
        Assert.False(CronSchedule.TryParse(expr, Utc, out _, out var error));
        Assert.Contains(message, error, StringComparison.Ordinal);
        Assert.StartsWith($"'{expr}': ", error, StringComparison.Ordinal);
        Assert.DoesNotContain("The given cron expression", error, StringComparison.Ordinal);
    }
}
