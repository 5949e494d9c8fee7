namespace ProxyBackup.TestSupport;

/// <summary>An IProgress that reports on the reporting thread, at once (Progress&lt;T&gt; posts to the pool: a test could not stop on a report).</summary>
public sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
{
    public void Report(T value) => report(value);
}
