namespace ProxyBackup.Engine;

/// <summary>
/// One hot-plug at a time on the proxy, across this process's jobs and across processes (the
/// daemon and a restore started from the CLI or TUI): a disk is found as the one new device of
/// its size when the hypervisor does not honour the SCSI target, which is only unambiguous when
/// nobody else attaches meanwhile. The file lock (flock) is released by the kernel when its holder
/// dies, so a crashed job never blocks the next.
/// </summary>
public sealed class ProxyHotplugLock(string? lockFile)
{
    private static readonly TimeSpan Poll = TimeSpan.FromMilliseconds(200);
    // Static: every CloudSteps of this process shares the one proxy.
    private static readonly SemaphoreSlim InProcess = new(1, 1);

    public async Task<IDisposable> AcquireAsync(CancellationToken ct)
    {
        await InProcess.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            if (lockFile is null) return new Held(null);
            while (true)
            {
                try
                {
                    // FileShare.None takes flock(LOCK_EX | LOCK_NB) on Linux: it fails at once while another process holds it.
                    return new Held(new FileStream(lockFile, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None));
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

    private sealed class Held(FileStream? file) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            file?.Dispose();
            InProcess.Release();
        }
    }
}
