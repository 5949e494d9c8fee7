using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

/// <summary>
/// The lock protocol of docs/repository-format.md: shared for backups and restores, exclusive for
/// retention and garbage collection; files in locks/, refreshed while held, and judged stale when
/// not refreshed for 30 minutes or when their process on this host is gone.
/// </summary>
public sealed class RepositoryLock : IDisposable
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(30);

    private readonly string _path;
    private readonly LockInfo _info;
    private readonly TimeProvider _clock;
    private readonly ITimer _refresh;
    private bool _released;

    private RepositoryLock(string path, LockInfo info, TimeProvider clock)
    {
        _path = path;
        _info = info;
        _clock = clock;
        _refresh = clock.CreateTimer(_ => Refresh(), null, RefreshInterval, RefreshInterval);
    }

    public sealed record LockInfo(
        [property: JsonPropertyName("host")] string Host,
        [property: JsonPropertyName("pid")] int Pid,
        [property: JsonPropertyName("process_start")] long ProcessStart,
        [property: JsonPropertyName("purpose")] string Purpose,
        [property: JsonPropertyName("created")] DateTimeOffset Created,
        [property: JsonPropertyName("refreshed")] DateTimeOffset Refreshed);

    /// <summary>Takes the lock, waiting up to <paramref name="wait"/> for a conflicting holder to finish.</summary>
    public static RepositoryLock Acquire(BackupRepository repository, bool exclusive, string purpose, TimeSpan? wait = null)
    {
        var clock = repository.Clock;
        var deadline = clock.GetUtcNow() + (wait ?? TimeSpan.Zero);
        var dir = repository.LocksDirectory;
        OwnerOnly.CreateDirectory(dir);
        while (true)
        {
            var now = clock.GetUtcNow();
            var info = new LockInfo(Environment.MachineName, Environment.ProcessId, ProcessOwner.Current.StartTicks, purpose, now, now);
            var path = Path.Combine(dir, $"{(exclusive ? "exclusive" : "shared")}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}");
            AtomicFile.Write(repository.TmpDirectory, path, JsonSerializer.SerializeToUtf8Bytes(info), Durability.Immediate);
            var conflict = Holders(dir, clock).FirstOrDefault(h => h.Path != path && (exclusive || h.Exclusive));
            if (conflict.Path is null) return new RepositoryLock(path, info, clock);
            File.Delete(path);
            if (clock.GetUtcNow() >= deadline)
                throw new RepositoryLockedException(
                    $"The repository is locked {(conflict.Exclusive ? "exclusively" : "")} by {conflict.Info.Purpose} (host {conflict.Info.Host}, pid {conflict.Info.Pid}, since {conflict.Info.Created:u}); retry when it has finished.");
            Thread.Sleep(TimeSpan.FromMilliseconds(500));
        }
    }

    /// <summary>The live locks; stale ones are removed on the way.</summary>
    public static IEnumerable<(string Path, bool Exclusive, LockInfo Info)> Holders(string directory, TimeProvider clock)
    {
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            var name = Path.GetFileName(file);
            var exclusive = name.StartsWith("exclusive-", StringComparison.Ordinal);
            if (!exclusive && !name.StartsWith("shared-", StringComparison.Ordinal)) continue;
            LockInfo? info;
            try { info = JsonSerializer.Deserialize<LockInfo>(File.ReadAllBytes(file)); }
            catch (Exception e) when (e is IOException or JsonException) { continue; }
            if (info is null) continue;
            if (IsStale(info, clock.GetUtcNow()))
            {
                AtomicFile.TryDelete(file);
                continue;
            }
            yield return (file, exclusive, info);
        }
    }

    private static bool IsStale(LockInfo info, DateTimeOffset now)
    {
        // An owner on another host is judged by its refreshes alone.
        return now - info.Refreshed > StaleAfter || !new ProcessOwner(info.Host, info.Pid, info.ProcessStart).MayBeAlive();
    }

    private void Refresh()
    {
        if (_released) return;
        try
        {
            var updated = _info with { Refreshed = _clock.GetUtcNow() };
            File.WriteAllBytes(_path, JsonSerializer.SerializeToUtf8Bytes(updated));
        }
        catch (IOException e)
        {
            Trace.TraceWarning($"Could not refresh repository lock {_path}: {e.Message}");
        }
    }

    public void Dispose()
    {
        if (_released) return;
        _released = true;
        _refresh.Dispose();
        AtomicFile.TryDelete(_path);
    }
}

public sealed class RepositoryLockedException(string message) : RepositoryException(message);
