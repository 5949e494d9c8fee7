namespace ProxyBackup.Engine;

public enum HotplugKind { Attach, Detach }

/// <summary>
/// One hot-plug at a time on the proxy, across this process's jobs and across processes (the
/// daemon and a restore started from the CLI or TUI): a disk is found as the one new device of
/// its size when the hypervisor does not honour the SCSI target, which is only unambiguous when
/// nobody else attaches meanwhile. The file lock (flock) is released by the kernel when its holder
/// dies, so a crashed job never blocks the next. Within the process a detach goes before the
/// attaches waiting: it lets its job go on to its next VM instead of every job queueing behind the
/// attaches in step (docs/architecture.md, "What is serialised").
/// </summary>
public sealed class ProxyHotplugLock(string? lockFile)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(50);
    // Static: every CloudSteps of this process shares the one proxy.
    private static readonly Turns InProcess = new();

    public async Task<Hold> AcquireAsync(HotplugKind kind, CancellationToken ct)
    {
        await InProcess.WaitAsync(kind == HotplugKind.Detach, ct).ConfigureAwait(false);
        try
        {
            if (lockFile is null) return new Hold(null);
            while (true)
            {
                try
                {
                    // FileShare.None takes flock(LOCK_EX | LOCK_NB) on Linux: it fails at once while another process holds it.
                    return new Hold(new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
                }
                catch (IOException) when (File.Exists(lockFile))
                {
                    await Task.Delay(Poll, ct).ConfigureAwait(false);
                }
            }
        }
        catch
        {
            InProcess.Release();
            throw;
        }
    }

    /// <summary>An async mutex whose waiters of the first rank go before those of the second, each rank in arrival order.</summary>
    private sealed class Turns
    {
        private readonly Lock _gate = new();
        private readonly LinkedList<TaskCompletionSource> _first = new(), _second = new();
        private bool _held;

        public async Task WaitAsync(bool firstRank, CancellationToken ct)
        {
            TaskCompletionSource turn;
            LinkedListNode<TaskCompletionSource> queued;
            lock (_gate)
            {
                ct.ThrowIfCancellationRequested();
                if (!_held)
                {
                    _held = true;
                    return;
                }
                turn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                queued = (firstRank ? _first : _second).AddLast(turn);
            }
            // A waiter cancelled before its turn leaves the queue; one whose turn came first holds the lock.
            await using (ct.Register(() =>
            {
                lock (_gate)
                    if (queued.List is { } queue)
                    {
                        queue.Remove(queued);
                        turn.TrySetCanceled(ct);
                    }
            }).ConfigureAwait(false))
                await turn.Task.ConfigureAwait(false);
        }

        public void Release()
        {
            TaskCompletionSource? next = null;
            lock (_gate)
            {
                var queue = _first.Count > 0 ? _first : _second;
                if (queue.First is { } node)
                {
                    queue.RemoveFirst();
                    next = node.Value;
                }
                else _held = false;
            }
            next?.SetResult();
        }
    }

    /// <summary>The lock while held; <see cref="Elapsed"/> is how long so far (the jobs log it: the proxy's hot-plugs are every job's bottleneck).</summary>
    public sealed class Hold : IDisposable
    {
        private readonly FileStream? _file;
        private readonly long _taken = TimeProvider.System.GetTimestamp();
        private int _disposed;

        internal Hold(FileStream? file) => _file = file;

        public TimeSpan Elapsed => TimeProvider.System.GetElapsedTime(_taken);

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            _file?.Dispose();
            InProcess.Release();
        }
    }
}
