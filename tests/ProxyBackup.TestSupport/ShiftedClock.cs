namespace ProxyBackup.TestSupport;

/// <summary>The real clock moved forward by what the test adds: waits run in real time, deadlines and graces see the shifted time.</summary>
public sealed class ShiftedClock : TimeProvider
{
    public TimeSpan Offset { get; set; }
    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Offset;
}
