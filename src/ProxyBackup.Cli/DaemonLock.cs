namespace ProxyBackup.Cli;

/// <summary>
/// One daemon per catalog: a second one would run every policy twice and its start-up cleanup
/// would pass over the first one's jobs. Held as a flock on <c>daemon.lock</c> beside the catalog
/// (the kernel drops it when its holder dies, so a killed daemon never blocks the next), with the
/// holder's pid in <c>daemon.pid</c> for the message that names it.
/// </summary>
internal sealed class DaemonLock : IDisposable
{
    private readonly FileStream _lock;

    private DaemonLock(FileStream held) => _lock = held;

    public static DaemonLock Take(string catalogPath)
    {
        var dir = Path.GetDirectoryName(Path.GetFullPath(catalogPath))!;
        Directory.CreateDirectory(dir);
        var pidFile = Path.Combine(dir, "daemon.pid");
        try
        {
            // FileShare.None takes flock(LOCK_EX | LOCK_NB) on Linux.
            var held = new FileStream(Path.Combine(dir, "daemon.lock"), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            File.WriteAllText(pidFile, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            return new DaemonLock(held);
        }
        catch (IOException)
        {
            var pid = File.Exists(pidFile) ? File.ReadAllText(pidFile).Trim() : "unknown";
            throw new CliException($"Another proxybackup daemon (pid {pid}) already runs with the catalog {catalogPath}; stop it first (systemctl stop proxybackup).");
        }
    }

    public void Dispose() => _lock.Dispose();
}
