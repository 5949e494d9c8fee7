using ProxyBackup.OpenNebula;
using Xunit;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>The waits' poll schedule (docs/architecture.md, "What is serialised"), walked with the worst jitter.</summary>
public class PollPaceTests
{
    private static readonly TimeSpan FirstPoll = TimeSpan.FromMilliseconds(25), MaxPoll = TimeSpan.FromSeconds(2);

    /// <summary>When the poll that sees an operation of <paramref name="duration"/> done comes (the first poll is at once), and how many polls it took.</summary>
    private static (TimeSpan SeenAt, int Polls) Walk(TimeSpan duration, TimeSpan firstPoll, double lateness, double jitter, TimeSpan? expected = null)
    {
        var t = TimeSpan.Zero;
        var polls = 1;
        while (t < duration)
        {
            t += OneWaiter.PollPause(t, expected, firstPoll, MaxPoll, lateness, jitter);
            polls++;
        }
        return (t, polls);
    }

    [Theory]
    [InlineData(100)]
    [InlineData(200)]   // attach, detach
    [InlineData(500)]   // snapshot
    [InlineData(1100)]  // save-as
    [InlineData(1400)]
    public void An_operation_of_oned_s_own_duration_is_seen_done_within_a_fifth_of_it_or_a_first_poll(int milliseconds)
    {
        var duration = TimeSpan.FromMilliseconds(milliseconds);
        var (seenAt, _) = Walk(duration, FirstPoll, 0.2, jitter: 1.1);
        var late = seenAt - duration;
        Assert.True(late <= TimeSpan.FromMilliseconds(Math.Max(28, 0.22 * milliseconds)), $"a {milliseconds} ms operation seen {late.TotalMilliseconds:0} ms late");
    }

    [Fact]
    public void A_hot_plug_under_the_lock_is_seen_done_within_thirty_milliseconds()
    {
        var (seenAt, _) = Walk(TimeSpan.FromMilliseconds(200), FirstPoll, 0.1, jitter: 1.1);
        Assert.InRange((seenAt - TimeSpan.FromMilliseconds(200)).TotalMilliseconds, 0, 30);
    }

    [Fact]
    public void A_ten_minute_copy_costs_a_poll_every_two_seconds_not_more()
    {
        var (_, polls) = Walk(TimeSpan.FromMinutes(10), FirstPoll, 0.2, jitter: 0.9);
        Assert.InRange(polls, 300, 600 / 1.8 + 50);
        Assert.Equal(MaxPoll, OneWaiter.PollPause(TimeSpan.FromHours(1), null, FirstPoll, MaxPoll, 0.2, 1.0));
        Assert.Equal(FirstPoll, OneWaiter.PollPause(TimeSpan.Zero, null, FirstPoll, MaxPoll, 0.2, 1.0));
    }

    [Theory]
    [InlineData(200, 0.1)]   // attach, detach under the hot-plug lock
    [InlineData(500, 0.2)]   // snapshot
    [InlineData(1100, 0.2)]  // save-as
    public void An_operation_that_takes_what_it_took_lately_is_seen_done_within_a_few_hundredths_with_five_calls_at_most(int milliseconds, double lateness)
    {
        var duration = TimeSpan.FromMilliseconds(milliseconds);
        foreach (var jitter in new[] { 0.9, 1.1 })
        {
            var (_, plainPolls) = Walk(duration, FirstPoll, lateness, jitter);
            var (seenAt, polls) = Walk(duration, FirstPoll, lateness, jitter, expected: duration);
            Assert.InRange((seenAt - duration).TotalMilliseconds, 0, Math.Max(28, 1.1 * milliseconds * lateness / 4));
            Assert.True(polls <= 5 && polls < plainPolls, $"jitter {jitter}: {polls} polls, the plain schedule {plainPolls}");
        }
    }

    [Theory]
    [InlineData(1100, 2.0)]
    [InlineData(1100, 10.0)]
    [InlineData(500, 3.0)]
    public void An_operation_slower_than_lately_is_still_seen_done_within_a_fifth_of_its_time(int expectedMs, double slower)
    {
        var duration = TimeSpan.FromMilliseconds(expectedMs * slower);
        var (seenAt, polls) = Walk(duration, FirstPoll, 0.2, jitter: 1.1, expected: TimeSpan.FromMilliseconds(expectedMs));
        Assert.True(seenAt - duration <= duration * 0.22, $"{duration.TotalMilliseconds:0} ms seen {(seenAt - duration).TotalMilliseconds:0} ms late");
        Assert.True(polls <= 40, $"{polls} polls");
    }

    [Fact]
    public void An_operation_faster_than_lately_waits_at_most_for_the_time_it_took_lately()
    {
        var expected = TimeSpan.FromMilliseconds(1100);
        var (seenAt, polls) = Walk(TimeSpan.FromMilliseconds(300), FirstPoll, 0.2, jitter: 1.1, expected: expected);
        Assert.True(seenAt <= expected, $"seen at {seenAt.TotalMilliseconds:0} ms");
        Assert.Equal(2, polls);
    }

    [Fact]
    public void The_expected_time_is_the_shortest_of_the_last_eight_per_operation_and_size_class()
    {
        var times = new OperationTimes();
        var snapshot = new AwaitedOperation("snapshot");
        Assert.Null(times.Expected(snapshot));
        times.Record(snapshot, TimeSpan.FromMilliseconds(100));
        foreach (var ms in new[] { 600, 520, 700, 530, 610, 550, 580 }) times.Record(snapshot, TimeSpan.FromMilliseconds(ms));
        Assert.Equal(TimeSpan.FromMilliseconds(100), times.Expected(snapshot));
        times.Record(snapshot, TimeSpan.FromMilliseconds(640));   // the 100 ms outlier is ninth from the end now
        Assert.Equal(TimeSpan.FromMilliseconds(520), times.Expected(snapshot));

        times.Record(new AwaitedOperation("save-as", 16L << 20), TimeSpan.FromSeconds(1.1));
        Assert.Equal(TimeSpan.FromSeconds(1.1), times.Expected(new AwaitedOperation("save-as", 20L << 20)));   // same power of two
        Assert.Null(times.Expected(new AwaitedOperation("save-as", 40L << 30)));
        Assert.Null(times.Expected(new AwaitedOperation("attach")));
    }

    /// <summary>
    /// A night of one operation through <see cref="OneWaiter"/>'s schedule and recording: each probe
    /// is sent at t and answered <paramref name="roundTrip"/> later; returns when each operation was
    /// seen done, after how long it took.
    /// </summary>
    private static List<TimeSpan> Night(IEnumerable<TimeSpan> durations, TimeSpan roundTrip, double lateness)
    {
        var times = new OperationTimes();
        var operation = new AwaitedOperation("attach");
        var late = new List<TimeSpan>();
        foreach (var duration in durations)
        {
            var expected = times.Expected(operation);
            var probes = new OneWaiter.ProbeTimes();
            var t = TimeSpan.Zero;
            // The probe sent at t finds the operation done when t reaches its duration.
            for (; ; t += roundTrip, t += OneWaiter.PollPause(t, expected, FirstPoll, MaxPoll, lateness, 1.0))
            {
                probes.Saw(t >= duration, t);
                if (t >= duration) break;
            }
            times.Record(operation, probes.Took);
            late.Add(t + roundTrip - duration);
        }
        return late;
    }

    [Fact]
    public void The_answers_round_trip_does_not_inflate_what_an_operation_is_expected_to_take()
    {
        // 0.2 s attaches, 50 ms answers: seen done within the round trip and a close poll, night long.
        var late = Night(Enumerable.Repeat(TimeSpan.FromMilliseconds(200), 40), TimeSpan.FromMilliseconds(50), 0.1);
        Assert.All(late.Skip(2), l => Assert.InRange(l.TotalMilliseconds, 0, 50 + 50 + 30));
    }

    [Fact]
    public void After_slow_operations_fast_ones_are_followed_within_a_few()
    {
        var durations = Enumerable.Repeat(TimeSpan.FromSeconds(1), 8).Concat(Enumerable.Repeat(TimeSpan.FromMilliseconds(200), 12));
        var late = Night(durations, TimeSpan.FromMilliseconds(5), 0.1);
        Assert.All(late.Skip(8 + 4), l => Assert.InRange(l.TotalMilliseconds, 0, 5 + 5 + 30));
    }
}
