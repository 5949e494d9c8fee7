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
    /// fewest: otherwise the first jobs would take the memory and the others would wait for them
    /// instead of running beside them.
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
    /// Holds <paramref name="bytes"/> of the budget for a job from now until the admission is
    /// disposed, waiting first until they fit. A daemon job takes its memory this way before its
    /// first cloud call, so that it never waits for memory with its snapshots taken. The job hands
    /// the admission to its repository operations (<see cref="ReserveAsync"/>), which draw on it
    /// before the rest of the budget (one at a time; a second one at once reserves as usual).
    /// </summary>
    /// <param name="waiting">Called once if the job has to wait for memory.</param>
    public Task<Admission> AdmitAsync(long bytes, Action? waiting, CancellationToken ct) =>
        WaitForAsync(() =>
        {
            if (bytes > _budget - _reserved && _reserved != 0) return null;
            _reserved += bytes;
            _operations++;
            return new Admission(this, bytes);
        }, waiting, ct);

    /// <summary>
    /// The workers an operation may run, and their memory until the lease is disposed. Each worker
    /// needs <paramref name="bytesPerWorker"/>, the operation <paramref name="fixedBytes"/> besides.
    /// <paramref name="preferred"/> workers are only considered when their buffers take no more than
    /// half the budget, so that two such operations can run side by side, and while the budget keeps
    /// room for the other <see cref="ExpectedOperations"/> at their fewest.
    /// </summary>
    /// <param name="waiting">Called once if the operation has to wait for memory.</param>
    /// <param name="admission">The job's admission (<see cref="AdmitAsync"/>) this operation draws on first, if any.</param>
    public Task<Lease> ReserveAsync(long bytesPerWorker, long fixedBytes, int preferred, int fewest, Action? waiting, CancellationToken ct, Admission? admission = null)
    {
        long Need(int workers) => fixedBytes + workers * bytesPerWorker;
        var admitted = admission?.Memory == this ? admission : null;
        return WaitForAsync(() =>
        {
            var drawn = admitted is { Lent: false } ? admitted : null;
            var credit = drawn?.Bytes ?? 0;
            var free = _budget - _reserved + credit;
            // An admitted job is counted already; anyone else counts themselves now.
            var othersRoom = Math.Max(0, _expected - _operations - (drawn is null ? 1 : 0)) * Need(fewest);
            var workers = preferred * bytesPerWorker <= _budget / 2 && Need(preferred) + othersRoom <= free ? preferred
                : Need(fewest) <= free || _reserved == credit ? fewest
                : 0;
            if (workers == 0) return null;
            var extra = Math.Max(0, Need(workers) - credit);
            _reserved += extra;
            if (drawn is null) _operations++;
            else drawn.Lent = true;
            return new Lease(this, workers, extra, drawn);
        }, waiting, ct);
    }

    /// <summary>Calls <paramref name="take"/> under the lock until it grants something, waiting for releases in between.</summary>
    private async Task<T> WaitForAsync<T>(Func<T?> take, Action? waiting, CancellationToken ct) where T : class
    {
        var told = false;
        while (true)
        {
            Task released;
            lock (_gate)
            {
                if (take() is { } taken) return taken;
                released = _released.Task;
            }
            if (!told) waiting?.Invoke();
            told = true;
            await released.WaitAsync(ct).ConfigureAwait(false);
        }
    }

    private void Release(long bytes, bool endsOperation, Admission? returnedTo = null)
    {
        TaskCompletionSource released;
        lock (_gate)
        {
            _reserved -= bytes;
            if (endsOperation) _operations--;
            if (returnedTo is not null) returnedTo.Lent = false;
            released = _released;
            _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        released.SetResult();
    }

    /// <summary>Workers granted to one operation; disposing gives their memory back (to the job's admission, if it drew on one).</summary>
    public sealed class Lease : IDisposable
    {
        private readonly ChunkMemory _memory;
        private readonly long _bytes;
        private readonly Admission? _admission;
        private int _disposed;

        internal Lease(ChunkMemory memory, int workers, long bytes, Admission? admission)
        {
            _memory = memory;
            Workers = workers;
            _bytes = bytes;
            _admission = admission;
        }

        public int Workers { get; }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) _memory.Release(_bytes, endsOperation: _admission is null, _admission);
        }
    }

    /// <summary>Memory a job holds from its start to its end (<see cref="AdmitAsync"/>).</summary>
    public sealed class Admission : IDisposable
    {
        private int _disposed;

        internal Admission(ChunkMemory memory, long bytes)
        {
            Memory = memory;
            Bytes = bytes;
        }

        internal ChunkMemory Memory { get; }
        internal long Bytes { get; }

        /// <summary>An operation draws on it now; guarded by the memory's lock.</summary>
        internal bool Lent { get; set; }

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0) Memory.Release(Bytes, endsOperation: true);
        }
    }
}
