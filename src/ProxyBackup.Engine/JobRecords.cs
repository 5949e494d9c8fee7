namespace ProxyBackup.Engine;

/// <summary>A job as the catalog records it.</summary>
public sealed record JobRecord(
    string Id, string Kind, int VmId, string State, DateTimeOffset Started, DateTimeOffset? Ended,
    long BytesRead, long BytesStored, string? RestorePoint, string? Error);

/// <summary>Where jobs are recorded: every start, and every end with its outcome.</summary>
public interface IJobRecorder
{
    void Started(string jobId, string kind, int vmId);
    void Finished(string jobId, bool succeeded, long bytesRead, long bytesStored, string? restorePoint, string? error);
    IReadOnlyList<JobRecord> Recent(int count);
}
