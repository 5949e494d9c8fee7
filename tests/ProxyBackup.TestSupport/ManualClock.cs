namespace ProxyBackup.TestSupport;

/// <summary>A clock the test turns: what reads the time decides as if that much time had passed.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;
    public override DateTimeOffset GetUtcNow() => Now;
}
