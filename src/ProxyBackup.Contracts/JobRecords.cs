namespace ProxyBackup.Contracts;

/// <summary>A job as the catalog records it.</summary>
/// <param name="Measured">What the job measured beside its own length: a drill's recovery time (until the VM ran).</param>
public sealed record JobRecord(
    string Id, string Kind, int VmId, string State, DateTimeOffset Started, DateTimeOffset? Ended,
    long BytesRead, long BytesStored, string? RestorePoint, string? Error, TimeSpan? Measured = null);

/// <summary>Where jobs are recorded: every start, and every end with its outcome.</summary>
public interface IJobRecorder
{
    void Started(string jobId, string kind, int vmId);
    void Finished(string jobId, bool succeeded, long bytesRead, long bytesStored, string? restorePoint, string? error);

    /// <summary>Records what the job measured (a drill's recovery time), shown beside it.</summary>
    void Measured(string jobId, TimeSpan measured);
    IReadOnlyList<JobRecord> Recent(int count);

    /// <summary>The jobs started at or after <paramref name="since"/>, newest first.</summary>
    IReadOnlyList<JobRecord> Since(DateTimeOffset since);

    /// <summary>Each VM's latest job of <paramref name="kind"/> ("backup", "restore") in <paramref name="state"/> (any when null), however long ago it ran.</summary>
    IReadOnlyDictionary<int, JobRecord> LastJobs(string kind, string? state = null);

    /// <summary>How many jobs of <paramref name="kind"/> failed or were interrupted, per VM, since the catalog began.</summary>
    IReadOnlyDictionary<int, int> FailureCounts(string kind);

    /// <summary>
    /// Records as "interrupted" the running jobs whose process is gone (killed, crashed, a reboot),
    /// with the moment they were last seen; returns how many.
    /// </summary>
    int MarkInterrupted();

    /// <summary>A line of the job's own log (what an operator reads when asking why).</summary>
    void Log(string jobId, string level, string message);
    IReadOnlyList<(DateTimeOffset Time, string Level, string Message)> LogOf(string jobId);
}

/// <summary>A restore point as the catalog indexes it (the repository stays the source of truth).</summary>
public sealed record ListedRestorePoint(string Source, string Id, DateTimeOffset Time, int VmId, string VmName, string Kind, int Disks, long Bytes);

/// <summary>The catalog's index of restore points: kept in step after each job, rebuildable from the repository alone.</summary>
public interface IRestorePointList
{
    /// <summary>Makes the index hold exactly these restore points for the source.</summary>
    void Sync(string source, IReadOnlyList<ListedRestorePoint> points);

    /// <summary>Makes the index hold exactly these restore points, of every source (a rebuild from the repository).</summary>
    void ReplaceAll(IReadOnlyList<ListedRestorePoint> points);
    IReadOnlyList<ListedRestorePoint> ListedPoints(string? source = null);
}
