using System.Text.Json;
using ProxyBackup.Contracts;

namespace ProxyBackup.Repository;

/// <summary>Verify, retention, garbage collection and statistics.</summary>
public sealed partial class BackupRepository
{
    /// <param name="subset">With <paramref name="readData"/>: read only this part of the chunks, check the others exist.</param>
    public async Task<VerifyReport> VerifyAsync(bool readData, IProgress<TransferProgress>? progress = null, CancellationToken ct = default, VerifySubset? subset = null)
    {
        using var held = await RepositoryLock.AcquireAsync(this, exclusive: false, purpose: "verify", SharedLockWait, ct).ConfigureAwait(false);
        var report = await held.RunAsync(ct, token => new Verifier(StoredChunks, StoredPoints, Tuning, Memory).RunAsync(readData, subset, progress, token)).ConfigureAwait(false);
        if (!ReadOnly) RecordVerifyState(report, readData ? subset?.ToString() ?? "all" : "existence");
        return report;
    }

    private const string VerifyStateFile = "verify-state";

    /// <summary>Each restore point the verify looked at gets its last verification beside its index (PBS's verify state).</summary>
    private void RecordVerifyState(VerifyReport report, string data)
    {
        var now = Clock.GetUtcNow();
        foreach (var name in report.PointsChecked)
        {
            var sourceAndId = name.Split('/', 2);
            var (source, id) = (sourceAndId[0], sourceAndId[1]);
            var state = new VerifyState(now, data, !report.DamagedRestorePoints.ContainsKey(name));
            try { StoredPoints.WriteFile(source, id, VerifyStateFile, JsonSerializer.SerializeToUtf8Bytes(state, RepositoryJson.Default.VerifyState), Durability.AtCommit); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { } // forgotten meanwhile: nothing to record
        }
    }

    /// <summary>The last verification of a restore point, or null when it was never verified (or the record is unreadable).</summary>
    public VerifyState? LastVerification(RestorePoint point)
    {
        try { return JsonSerializer.Deserialize(StoredPoints.ReadFile(point.Source, point.Id, VerifyStateFile), RepositoryJson.Default.VerifyState); }
        catch (Exception e) when (e is RepositoryException or JsonException) { return null; }
    }

    /// <summary>Decides what a retention policy keeps; with <paramref name="dryRun"/> false, removes the rest.</summary>
    public IReadOnlyList<RetentionDecision> ApplyRetention(RetentionPolicy policy, string? source = null, bool dryRun = true, DateTimeOffset? now = null, TimeZoneInfo? zone = null)
    {
        // Retention of one source only removes its restore point directories: it runs beside backups
        // and restores (their chunks stay until a GC, which they exclude) and excludes only another
        // retention of that source (docs/repository-format.md, "Locks").
        using var held = dryRun ? null : source is null
            ? RepositoryLock.Acquire(this, exclusive: true, purpose: "retention", wait: ExclusiveLockWait)
            : RepositoryLock.Acquire(this, exclusive: false, purpose: $"retention of {source}", wait: ExclusiveLockWait, scope: $"retention:{source}");
        var plan = Retention.Plan(ListRestorePoints(source), policy, now ?? DateTimeOffset.UtcNow, zone);
        if (!dryRun)
            foreach (var d in plan.Where(d => !d.Keep)) Points.Remove(d.Point.Source, d.Point.Id);
        return plan;
    }

    /// <summary>
    /// Moves every restore point of <paramref name="from"/> to the source <paramref name="to"/>
    /// (docs/repository-format.md, "Renaming a source"): its files re-sealed for their new name, the
    /// index last, then the old point removed; no chunk is read or written. Under the exclusive
    /// lock, so that no backup adds a point to either meanwhile; stopped midway, run again it
    /// finishes. Returns how many points moved.
    /// </summary>
    public int RenameSource(string from, string to)
    {
        CheckSourceName(from);
        CheckSourceName(to);
        using var held = RepositoryLock.Acquire(this, exclusive: true, purpose: $"rename of {from} to {to}", wait: ExclusiveLockWait);
        var moved = 0;
        foreach (var point in ListRestorePoints(from))
        {
            held.EnsureHeld();
            if (!Points.Exists(to, point.Id))
            {
                Points.Begin(to, point.Id);
                foreach (var file in Points.Files(from, point.Id).Where(f => f is not ("index" or LocalPointStore.WriterFile)).ToList())
                    StoredPoints.WriteFile(to, point.Id, file, StoredPoints.ReadFile(from, point.Id, file), Durability.AtCommit);
                Points.SyncBeforeIndex();
                StoredPoints.WriteFile(to, point.Id, "index", JsonSerializer.SerializeToUtf8Bytes(point with { Source = to }, RepositoryJson.Default.RestorePoint), Durability.Immediate);
            }
            Points.Remove(from, point.Id);
            moved++;
        }
        return moved;
    }

    /// <summary>Removes one restore point: its index first, so that it vanishes at once; its chunks go at the next gc.</summary>
    public void Forget(RestorePoint point) => ForgetPoint(point.Source, point.Id);

    /// <summary>Removes one restore point by its name, also one whose index cannot be read (<see cref="ScanRestorePoints"/>).</summary>
    /// <param name="dryRun">Only check that there is such a point.</param>
    public void ForgetPoint(string source, string id, bool dryRun = false)
    {
        static bool IsName(string s) => s.Length > 0 && s != "." && s != ".." && s.IndexOfAny(['/', '\\', '\0']) < 0;
        // Only a point with an index: a directory without one is a backup still writing (or a dead one's, GC's business).
        if (!IsName(source) || !IsName(id) || !Points.Exists(source, id))
            throw new RepositoryException($"There is no restore point {source}/{id}.");
        if (dryRun) return;
        using var held = RepositoryLock.Acquire(this, exclusive: false, purpose: $"forget {source}/{id}", wait: ExclusiveLockWait, scope: $"retention:{source}");
        Points.Remove(source, id);
    }

    /// <summary>
    /// A margin below GC's cutoff, for clocks that differ (NFS). Running writers are protected by the
    /// cutoff itself (the start of the oldest lock holder) and the times they set on what they reuse;
    /// a writer whose lock was removed as stale never commits (docs/repository-format.md, "Garbage collection").
    /// </summary>
    public static readonly TimeSpan DefaultGcGrace = TimeSpan.FromHours(1);

    /// <summary>Runs beside backups, restores, verify and retention of one source; excludes another GC and retention of all sources.</summary>
    public GcReport CollectGarbage(TimeSpan? grace = null, CancellationToken ct = default)
    {
        using var held = RepositoryLock.Acquire(this, exclusive: false, purpose: "gc", wait: ExclusiveLockWait, ct, scope: "gc");
        return held.Run(ct, token => new GarbageCollector(Chunks, StoredPoints, Storage, Clock, held.FileName).Run(grace ?? DefaultGcGrace, token));
    }

    public RepositoryStats Stats() => RepositoryStats.Compute(Chunks, StoredPoints);
}
