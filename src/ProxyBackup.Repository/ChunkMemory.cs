namespace ProxyBackup.Repository;

/// <summary>
/// One memory budget for the chunk buffers of every backup, restore and verify that goes through a
/// repository object. The daemon runs several jobs at once on one repository object: each job alone
/// would take the memory batched hashing wants (32 workers), and together they could exhaust the
/// proxy VM. An operation gets its preferred workers if they fit, else the fewest it can run with,
/// else it waits for another operation to end; so the process stays within the budget however many
/// jobs run. An operation alone always runs, even if its fewest workers exceed the budget.
/// </summary>
public sealed class ChunkMemory
{
    /// <summary>Two batched 4 MiB-chunk backups side by side; with the runtime, a process stays under 512 MiB.</summary>
    public const long DefaultBudget = 384L << 20;

    private readonly object _gate = new();
    private long _budget = DefaultBudget;
    private int _expected = 1;
    private long _reserved;
    private int _operations;
    private TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public long Budget
    {
        get { lock (_gate) return _budget; }
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            lock (_gate) _budget = value;
        }
    }

    /// <summary>
    /// How many operations are meant to run at once (the daemon's Limits:MaxConcurrent). Preferred
    /// workers are granted only while the rest of the budget keeps room for the others at their
    /// fewest: otherwise the first jobs would take the memory and the last ones would wait, with
    /// their snapshots already taken.
    /// </summary>
    public int ExpectedOperations
    {
        get { lock (_gate) return _expected; }
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegativeOrZero(value);
            lock (_gate) _expected = value;
        }
    }

    /// <summary>What the operations under way hold now.</summary>
    public long Reserved { get { lock (_gate) return _reserved; } }

    /// <summary>
    /// The workers an operation may run, and their memory until the lease is disposed. Each worker
    /// needs <paramref name="bytesPerWorker"/>, the operation <paramref name="fixedBytes"/> besides.
    /// <paramref name="preferred"/> workers are only considered when their buffers take no more than
    /// half the budget, so that two such operations can run side by side, and while the budget keeps
    /// room for the other <see cref="ExpectedOperations"/> at their fewest.
    /// </summary>
    /// <param name="waiting">Called once if the operation has to wait for memory.</param>
    public async Task<Lease> ReserveAsync(long bytesPerWorker, long fixedBytes, int preferred, int fewest, Action? waiting, CancellationToken ct)
    {
        long Need(int workers) => fixedBytes + workers * bytesPerWorker;
        var told = false;
        while (true)
        {
            Task released;
            lock (_gate)
            {
                var free = _budget - _reserved;
                var othersRoom = Math.Max(0, _expected - _operations - 1) * Need(fewest);
                var workers = preferred * bytesPerWorker <= _budget / 2 && Need(preferred) + othersRoom <= free ? preferred
                    : Need(fewest) <= free || _reserved == 0 ? fewest
                    : 0;
                if (workers > 0)
                {
                    _reserved += Need(workers);
                    _operations++;
                    return new Lease(this, workers, Need(workers));
                }
                released = _released.Task;
            }
            if (!told) waiting?.Invoke();
            told = true;
            await released.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    private void Release(long bytes)
    {
        TaskCompletionSource released;
        lock (_gate)
        {
            _reserved -= bytes;
            _operations--;
            released = _released;
            _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        released.SetResult();
    }

    /// <summary>Workers granted to one operation; disposing gives their memory back.</summary>
    public sealed class Lease(ChunkMemory memory, int workers, long bytes) : IDisposable
    {
        private int _disposed;

        public int Workers { get; } = workers;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) memory.Release(bytes);
        }
    }
}
