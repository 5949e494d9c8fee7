using System.Numerics;

namespace ProxyBackup.OpenNebula;

/// <summary>
/// What a wait follows: an operation's kind and, for a copy, its size (a copy's time grows with it,
/// so copies are compared with copies of the same size class, a power of two).
/// </summary>
public readonly record struct AwaitedOperation(string Kind, long Bytes = 0)
{
    internal int SizeClass => Bytes <= 0 ? 0 : 64 - BitOperations.LeadingZeroCount((ulong)Bytes);
}

/// <summary>
/// How long each kind of operation took lately on one front-end, as the waits measured it (between
/// the last probe that saw it under way and the first that saw it done). A wait
/// sleeps through most of the shortest recent time and polls closely around it
/// (<see cref="OneWaiter.PollPause"/>): an operation that takes what it took before is seen done
/// within a few hundredths of a second, with a few calls (docs/architecture.md, "What is serialised").
/// </summary>
public sealed class OperationTimes
{
    /// <summary>Recent times kept per operation: one slow or fast outlier ages out after this many.</summary>
    private const int Kept = 8;

    private readonly Dictionary<(string Kind, int SizeClass), Queue<TimeSpan>> _recent = [];

    /// <summary>The shortest of the recent times, or null before the first one.</summary>
    public TimeSpan? Expected(AwaitedOperation operation)
    {
        lock (_recent)
            return _recent.TryGetValue((operation.Kind, operation.SizeClass), out var times) ? times.Min() : null;
    }

    public void Record(AwaitedOperation operation, TimeSpan took)
    {
        lock (_recent)
        {
            if (!_recent.TryGetValue((operation.Kind, operation.SizeClass), out var times))
                _recent[(operation.Kind, operation.SizeClass)] = times = new Queue<TimeSpan>(Kept + 1);
            times.Enqueue(took);
            if (times.Count > Kept) times.Dequeue();
        }
    }
}
