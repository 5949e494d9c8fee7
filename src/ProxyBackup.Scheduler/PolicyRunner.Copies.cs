using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.Repository;

namespace ProxyBackup.Scheduler;

/// <summary>
/// An off-site copy of the repository (docs/operations.md, "Off-site copies"): where it goes, when
/// (on <paramref name="Schedule"/>, or with none once the backups of a run have drained), and the
/// retention applied to the target after each copy (none: the target keeps everything copied).
/// </summary>
/// <param name="Open">Opens the target (its storage, its key); called for each copy, so that a target that was unreachable is tried again.</param>
public sealed record CopyTarget(string Name, string Location, Func<BackupRepository> Open, CronSchedule? Schedule = null, RetentionPolicy? Keep = null);

public sealed partial class PolicyRunner
{
    /// <summary>Set when a backup succeeded; the copies "after the backups" run once the queue has drained.</summary>
    private volatile bool _backedUpSinceCopy;
    private readonly Dictionary<string, DateTimeOffset> _nextCopy = new(StringComparer.Ordinal);
    private Task? _copies;

    /// <summary>
    /// Starts the copies that are due, one after another in the background (each reads the whole
    /// repository's new points: two at once would only share the proxy's bandwidth): scheduled ones
    /// at their time, the others when a backup succeeded and nothing waits or runs any more.
    /// </summary>
    private void StartCopiesIfDue(CancellationToken ct)
    {
        if (options.Copies.Count == 0 || _copies is { IsCompleted: false }) return;
        var now = options.Time.GetUtcNow();
        var drained = _backedUpSinceCopy && _queue.Waiting == 0 && _queue.Running.Count == 0;
        var due = new List<CopyTarget>();
        foreach (var target in options.Copies)
        {
            if (target.Schedule is not { } schedule)
            {
                if (drained) due.Add(target);
                continue;
            }
            if (!_nextCopy.TryGetValue(target.Name, out var next)) _nextCopy[target.Name] = next = schedule.Next(now);
            if (now < next) continue;
            _nextCopy[target.Name] = schedule.Next(now);
            due.Add(target);
        }
        if (due.Count == 0) return;
        if (drained) _backedUpSinceCopy = false;
        _copies = CopyAsync(due, ct);
        lock (_running) _running.Add(_copies);
    }

    /// <summary>Copies the repository into each target, then applies the target's retention; a failure is told, and the next target is tried.</summary>
    internal async Task CopyAsync(IReadOnlyList<CopyTarget> targets, CancellationToken ct)
    {
        await Task.Yield();
        foreach (var target in targets)
        {
            try
            {
                var into = target.Open();
                var progress = new LoggedProgress(logger, $"Copy {target.Name}");
                var report = await RepositoryCopy.RunAsync(repository, into, new CopySelection(Keep: target.Keep), progress, ct).ConfigureAwait(false);
                logger.LogInformation("Copy {Name} to {Location}: {Copied} restore point(s) copied, {There} already there, {Chunks} chunk(s) and {Bytes} bytes sent",
                    target.Name, target.Location, report.Copied, report.AlreadyThere, report.ChunksWritten, report.BytesWritten);
                if (report.Failed.Count > 0)
                    CopyFailed(target, $"{report.Failed.Count} restore point(s) are damaged here and were not copied (run 'proxybackup repository verify --read-data'): {string.Join("; ", report.Failed.Take(5))}");
                if (target.Keep is { IsEmpty: false } keep)
                {
                    // Only the sources this repository has: others sharing the target (another cloud's copies) are not this copy's to thin out.
                    var removed = repository.ListRestorePoints().Select(p => p.Source).Distinct()
                        .Sum(source => into.ApplyRetention(keep, source, dryRun: false).Count(d => !d.Keep));
                    if (removed > 0)
                    {
                        var gc = into.CollectGarbage(options.GcGrace);
                        logger.LogInformation("Copy {Name}: retention removed {Removed} restore point(s) there, {Chunks} chunk(s) freed", target.Name, removed, gc.ChunksRemoved);
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
            {
                CopyFailed(target, e.Message);
            }
        }
    }

    private void CopyFailed(CopyTarget target, string error)
    {
        logger.LogError("Copy {Name} to {Location} failed: {Error}", target.Name, target.Location, error);
        Notify(new Notification(NotificationEvent.CopyFailed, $"The off-site copy {target.Name} failed", Detail: $"{target.Location}: {error}"));
    }

    /// <summary>A long copy's progress in the daemon's log, at most once a minute.</summary>
    private sealed class LoggedProgress(ILogger logger, string what) : IProgress<TransferProgress>
    {
        private DateTime _last = DateTime.MinValue;

        public void Report(TransferProgress value)
        {
            if (DateTime.UtcNow - _last < TimeSpan.FromMinutes(1)) return;
            _last = DateTime.UtcNow;
            logger.LogInformation("{What}: {Progress}", what, value.ToString());
        }
    }
}
