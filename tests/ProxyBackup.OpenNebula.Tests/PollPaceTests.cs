using ProxyBackup.OpenNebula;
using Xunit;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>The waits' poll schedule (docs/architecture.md, "What is serialised"), walked with the worst jitter.</summary>
public class PollPaceTests
{
    private static readonly TimeSpan FirstPoll = TimeSpan.FromMilliseconds(25), MaxPoll = TimeSpan.FromSeconds(2);

    /// <summary>When the poll that sees an operation of <paramref name="duration"/> done comes (the first poll is at once), and how many polls it took.</summary>
    private static (TimeSpan SeenAt, int Polls) Walk(TimeSpan duration, TimeSpan firstPoll, double lateness, double jitter)
    {
        var t = TimeSpan.Zero;
        var polls = 1;
        while (t < duration)
        {
            t += OneWaiter.PollPause(t, firstPoll, MaxPoll, lateness, jitter);
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
        Assert.Equal(MaxPoll, OneWaiter.PollPause(TimeSpan.FromHours(1), FirstPoll, MaxPoll, 0.2, 1.0));
        Assert.Equal(FirstPoll, OneWaiter.PollPause(TimeSpan.Zero, FirstPoll, MaxPoll, 0.2, 1.0));
    }
}
