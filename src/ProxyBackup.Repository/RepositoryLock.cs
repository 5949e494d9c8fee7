using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

/// <summary>
/// The lock protocol of docs/repository-format.md, "Locks": shared for backups, restores and
/// verify, retention of one source and garbage collection (scoped), exclusive for retention of all sources; files in locks/, replaced by a fresh
/// file while held, and judged stale when not refreshed for 30 minutes or when their process on
/// this host is gone. A lock file that cannot be read is a holder, not a free lock. Taking one is
/// write, then list (restic's way): it needs no atomic rename and no conditional write, only a
/// storage where a listing shows what was written before it (S3 since 2020, Ceph, a file system).
/// </summary>
public sealed class RepositoryLock : IDisposable
{
    public static readonly TimeSpan RefreshInterval = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan StaleAfter = TimeSpan.FromMinutes(30);

    private readonly BackupRepository? _repository;
    private readonly LockInfo? _info;
    private readonly ITimer? _refresh;
    private readonly CancellationTokenSource _lost = new();
    private readonly Lock _gate = new();
    private string? _path;
    private DateTimeOffset _lastRefreshed;
    private bool _released;

    private RepositoryLock(BackupRepository repository, string path, LockInfo info)
    {
        _repository = repository;
        _path = path;
        _info = info;
        _lastRefreshed = info.Refreshed;
        _refresh = repository.Clock.CreateTimer(_ => Refresh(), null, RefreshInterval, RefreshInterval);
    }

    /// <summary>No lock at all: a read-only repository, where no writer and no GC can run.</summary>
    private RepositoryLock() { }

    public sealed record LockInfo(
        [property: JsonPropertyName("host")] string Host,
        [property: JsonPropertyName("pid")] int Pid,
        [property: JsonPropertyName("process_start")] long ProcessStart,
        [property: JsonPropertyName("purpose")] string Purpose,
        [property: JsonPropertyName("created")] DateTimeOffset Created,
        [property: JsonPropertyName("refreshed")] DateTimeOffset Refreshed,
        [property: JsonPropertyName("scope")] string? Scope = null,
        [property: JsonPropertyName("boot")] string? Boot = null,
        [property: JsonPropertyName("pid_ns")] string? PidNamespace = null);

    /// <summary>The lock's file name in locks/ now (a refresh replaces it); null for no lock.</summary>
    internal string? FileName
    {
        get { lock (_gate) return _path; }
    }

    /// <summary>
    /// Cancelled when the lock could not be refreshed for so long that others may soon take it for
    /// stale: the operation must stop before a GC, trusting the lock gone, deletes what it writes.
    /// </summary>
    public CancellationToken Lost => _lost.Token;

    /// <summary>Takes the lock, waiting up to <paramref name="wait"/> for a conflicting holder to finish.</summary>
    public static RepositoryLock Acquire(BackupRepository repository, bool exclusive, string purpose, TimeSpan? wait = null, CancellationToken ct = default, string? scope = null) =>
        AcquireAsync(repository, exclusive, purpose, wait, ct, scope).GetAwaiter().GetResult();

    /// <summary>
    /// Takes the lock, waiting (without blocking a thread, and cancellably) up to <paramref name="wait"/>
    /// for a conflicting holder to finish. On a read-only repository a shared lock is not written at
    /// all; an exclusive one is refused. Two shared locks of the same <paramref name="scope"/> (retention
    /// of one source) exclude each other, and nothing else.
    /// </summary>
    public static async Task<RepositoryLock> AcquireAsync(BackupRepository repository, bool exclusive, string purpose, TimeSpan? wait = null, CancellationToken ct = default,
        string? scope = null)
    {
        BackupRepository.RequireMounted(repository.MountPoint);
        // Scoped locks are taken by retention and forget, which remove restore points: writers too.
        if (repository.ReadOnly)
            return exclusive || scope is not null ? throw new RepositoryException($"Repository {repository.Root} is read-only: {purpose} needs to write to it.") : new RepositoryLock();
        var clock = repository.Clock;
        var deadline = clock.GetUtcNow() + (wait ?? TimeSpan.Zero);
        while (true)
        {
            var now = clock.GetUtcNow();
            var me = ProcessOwner.Current;
            var info = new LockInfo(me.Host, me.Pid, me.StartTicks, purpose, now, now, scope, ProcessOwner.BootId, ProcessOwner.PidNamespace);
            var path = Write(repository, exclusive, info);
            var conflict = Holders(repository.Storage, clock).FirstOrDefault(h => h.Name != path && (exclusive || h.Exclusive || (scope is not null && h.Info.Scope == scope)));
            if (conflict.Name is null) return new RepositoryLock(repository, path, info);
            TryDelete(repository, path);
            if (clock.GetUtcNow() >= deadline)
                throw new RepositoryLockedException(
                    $"The repository is locked {(conflict.Exclusive ? "exclusively " : "")}by {conflict.Info.Purpose} (host {conflict.Info.Host}, pid {conflict.Info.Pid}, since {conflict.Info.Created:u}); retry when it has finished.");
            // Two takers that saw each other both step back: a random pause lets one of them win the next round.
            await Task.Delay(TimeSpan.FromMilliseconds(250 + Random.Shared.Next(500)), clock, ct).ConfigureAwait(false);
        }
    }

    /// <summary>The folder of the lock files in a repository's storage.</summary>
    public const string Folder = "locks";

    private static string Write(BackupRepository repository, bool exclusive, LockInfo info)
    {
        var name = $"{(exclusive ? "exclusive" : "shared")}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}";
        repository.Storage.Write($"{Folder}/{name}", JsonSerializer.SerializeToUtf8Bytes(info, RepositoryJson.Default.LockInfo));
        return name;
    }

    /// <summary>
    /// The live locks; stale ones are removed on the way. A file that cannot be read counts as a
    /// holder (<c>Readable</c> false: its times are the file's, not the holder's) until it is old
    /// enough to be stale. A lock file that vanished between the listing and its read was released
    /// or replaced by a refresh: the directory is listed again, so that a holder refreshing at that
    /// moment is never missed (GC relies on seeing every holder).
    /// </summary>
    public static IReadOnlyList<(string Name, bool Exclusive, LockInfo Info, bool Readable)> Holders(IRepositoryStorage storage, TimeProvider clock)
    {
        var relisted = 0;
        while (true)
        {
            var holders = new List<(string, bool, LockInfo, bool)>();
            var vanished = false;
            foreach (var name in storage.List(Folder))
            {
                var file = $"{Folder}/{name}";
                var exclusive = name.StartsWith("exclusive-", StringComparison.Ordinal);
                if (!exclusive && !name.StartsWith("shared-", StringComparison.Ordinal)) continue;
                LockInfo? info;
                try
                {
                    if (storage.Read(file) is not { } content) { vanished = true; continue; }
                    info = JsonSerializer.Deserialize(content, RepositoryJson.Default.LockInfo);
                }
                catch (Exception e) when (e is IOException or JsonException or UnauthorizedAccessException) { info = null; }
                if (info is null)
                {
                    DateTimeOffset written;
                    try { written = storage.LastWritten(file) ?? clock.GetUtcNow(); }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException) { written = clock.GetUtcNow(); }
                    if (clock.GetUtcNow() - written > StaleAfter) { storage.Delete(file); continue; }
                    holders.Add((name, exclusive, new LockInfo("unknown", 0, 0, $"an unreadable lock file ({name})", written, written), false));
                    continue;
                }
                if (IsStale(info, clock.GetUtcNow()))
                {
                    storage.Delete(file);
                    continue;
                }
                holders.Add((name, exclusive, info, true));
            }
            // A listing that lags behind a delete (some S3 servers) must not spin: after a few looks the gone file is gone.
            if (!vanished || ++relisted >= 20) return holders;
            Thread.Sleep(50);
        }
    }

    /// <summary>
    /// Not refreshed for <see cref="StaleAfter"/>, or its process is certainly gone: only a lock
    /// written under this machine's running kernel (the same boot id) and in this pid namespace (a
    /// container on the same kernel sees other pids) is judged by its pid. Another machine's lock,
    /// even one with this host name (an appliance clone, sharing an NFS repository), or one from
    /// before a reboot, is judged by its refreshes alone (docs/repository-format.md, "Lock files").
    /// </summary>
    private static bool IsStale(LockInfo info, DateTimeOffset now) =>
        now - info.Refreshed > StaleAfter || ProcessOwner.RunsHere(info.Pid, info.ProcessStart, info.Boot, info.PidNamespace) == false;

    /// <summary>
    /// Writes a fresh lock file, then removes the old one (restic's order): at every moment one of
    /// them is whole on disk, so a GC listing the locks never finds the holder missing or half-written.
    /// </summary>
    internal void Refresh()
    {
        lock (_gate)
        {
            if (_released || _repository is null || _path is null) return;
            var now = _repository.Clock.GetUtcNow();
            // A timer calls this: nothing may escape (it would end the process); a storage that cannot
            // be reached counts as a refresh that failed.
            try
            {
                if (_repository.Storage.Read($"{Folder}/{_path}") is null)
                {
                    // Someone judged this lock stale and removed it (a process frozen for 30 minutes): a
                    // GC may have run meanwhile, so what this holder wrote may be gone. It must stop.
                    Trace.TraceWarning($"Repository lock {_path} was removed by another process; the operation under it stops.");
                    _lost.Cancel();
                    return;
                }
                var fresh = Write(_repository, _path.StartsWith("exclusive-", StringComparison.Ordinal), _info! with { Refreshed = now });
                TryDelete(_repository, _path);
                _path = fresh;
                _lastRefreshed = now;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or RepositoryException)
            {
                Trace.TraceWarning($"Could not refresh repository lock {_path}: {e.Message}");
                if (now - _lastRefreshed >= StaleAfter - RefreshInterval) _lost.Cancel();
            }
        }
    }

    /// <summary>
    /// Runs work under this lock: it is cancelled by the caller or when the lock is lost, and a stop
    /// because of the lost lock is reported as such, not as a cancellation.
    /// </summary>
    public async Task<T> RunAsync<T>(CancellationToken ct, Func<CancellationToken, Task<T>> work)
    {
        using var guarded = CancellationTokenSource.CreateLinkedTokenSource(ct, Lost);
        try { return await work(guarded.Token).ConfigureAwait(false); }
        catch (OperationCanceledException) when (Lost.IsCancellationRequested && !ct.IsCancellationRequested) { throw LostWhileWorking(); }
    }

    /// <summary><see cref="RunAsync"/> for synchronous work (garbage collection).</summary>
    public T Run<T>(CancellationToken ct, Func<CancellationToken, T> work)
    {
        using var guarded = CancellationTokenSource.CreateLinkedTokenSource(ct, Lost);
        try { return work(guarded.Token); }
        catch (OperationCanceledException) when (Lost.IsCancellationRequested && !ct.IsCancellationRequested) { throw LostWhileWorking(); }
    }

    private static RepositoryLockedException LostWhileWorking() =>
        new($"Stopped: the repository lock could not be refreshed for {StaleAfter - RefreshInterval:%m} minutes, or another process removed it as stale (is the repository's disk or share still writable?). Nothing half-written is visible; run the operation again.");

    /// <summary>
    /// Throws unless this lock is still on disk: called just before a commit, so that a holder whose
    /// lock was removed as stale (and whose chunks a GC may then have deleted) never commits.
    /// </summary>
    public void EnsureHeld()
    {
        if (_repository is null) return;
        lock (_gate)
            if (_lost.IsCancellationRequested || _path is null || _repository.Storage.Read($"{Folder}/{_path}") is null)
            {
                _lost.Cancel();
                throw new RepositoryLockedException("This operation's repository lock was lost (removed as stale, or it could not be refreshed): it is not committed, so that a GC that ran meanwhile cannot have deleted what it references. Run it again.");
            }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            if (_released) return;
            _released = true;
        }
        _refresh?.Dispose();
        if (_path is not null && _repository is not null) TryDelete(_repository, _path);
    }

    /// <summary>Removes a lock file this process wrote; one that cannot be removed now goes stale on its own (30 minutes), and the operation's outcome stands.</summary>
    private static void TryDelete(BackupRepository repository, string name)
    {
        try { repository.Storage.Delete($"{Folder}/{name}"); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or RepositoryException)
        {
            Trace.TraceWarning($"Repository lock {name} could not be removed ({e.Message}); it goes stale on its own.");
        }
    }
}

public sealed class RepositoryLockedException(string message) : RepositoryException(message);
