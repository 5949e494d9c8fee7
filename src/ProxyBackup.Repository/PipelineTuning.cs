namespace ProxyBackup.Repository;

/// <summary>
/// The tuning of the backup, restore and verify pipelines in one place, validated. The defaults
/// were measured with scripts/bench-repository on 2 cores; docs/operations.md ("How fast, and what to give the proxy VM", "Tuning the pipeline") has the
/// figures and docs/architecture.md the reasons. The memory they share is <see cref="ChunkMemory"/>'s
/// budget (the daemon's Limits:MemoryMiB).
/// </summary>
public sealed record PipelineTuning
{
    public static PipelineTuning Default { get; } = new();

    /// <summary>Backup encoders (compress, encrypt, write): more than the cores, since each waits for its chunk to reach the disk.</summary>
    public int BackupEncoders { get; init; } = Math.Clamp(2 * Environment.ProcessorCount + 2, 3, 16);

    /// <summary>Chunk buffers the backup's reader fills ahead of the workers.</summary>
    public int BackupReadAhead { get; init; } = 4;

    /// <summary>Regions of a disk a backup reads chunks from in turn, so that compressing and writing overlap.</summary>
    public int BackupRegions { get; init; } = 4;

    /// <summary>Restore workers where hashes are not batched: O_DIRECT writes block, so twice the cores.</summary>
    public int RestoreWorkers { get; init; } = Math.Clamp(2 * Environment.ProcessorCount, 2, 16);

    /// <summary>Regions of a disk a restore takes chunks from in turn, so that decoding and writing overlap.</summary>
    public int RestoreRegions { get; init; } = 4;

    /// <summary>Verify workers (verify hashes with the platform's SHA-256, never batched).</summary>
    public int VerifyWorkers { get; init; } = Math.Clamp(Environment.ProcessorCount, 1, 8);

    /// <summary>Spare buffers of restore and verify, for the plaintext of chunks being decoded.</summary>
    public int SpareBuffers { get; init; } = Environment.ProcessorCount + 1;

    /// <summary>Workers where hashes are batched in lanes: 16 wait in a filling batch while the others read, decode and write.</summary>
    public int BatchingWorkers { get; init; } = 32;

    /// <summary>Below this many chunks a batch costs more core time than hashing each on its own thread.</summary>
    public int MinimumBatch { get; init; } = 8;

    /// <summary>How long the first chunk of a batch waits for the others.</summary>
    public TimeSpan BatchFillTime { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Every problem at once, naming the field.</summary>
    public IReadOnlyList<string> Problems()
    {
        var p = new List<string>();
        if (BackupEncoders < 1) p.Add("BackupEncoders: 1 or more");
        if (BackupReadAhead < 1) p.Add("BackupReadAhead: 1 or more");
        if (BackupRegions < 1) p.Add("BackupRegions: 1 or more");
        if (RestoreWorkers < 1) p.Add("RestoreWorkers: 1 or more");
        if (RestoreRegions < 1) p.Add("RestoreRegions: 1 or more");
        if (VerifyWorkers < 1) p.Add("VerifyWorkers: 1 or more");
        if (SpareBuffers < 1) p.Add("SpareBuffers: 1 or more");
        if (MinimumBatch is < 1 or > Sha256Lanes.Width) p.Add($"MinimumBatch: 1 to {Sha256Lanes.Width}");
        if (BatchingWorkers < Sha256Lanes.Width) p.Add($"BatchingWorkers: {Sha256Lanes.Width} or more, to fill a batch");
        if (BatchFillTime < TimeSpan.Zero || BatchFillTime > TimeSpan.FromSeconds(10)) p.Add("BatchFillTime: 0 to 10 s");
        return p;
    }

    public PipelineTuning Validated()
    {
        var problems = Problems();
        return problems.Count == 0 ? this : throw new ArgumentException("Pipeline tuning: " + string.Join("; ", problems) + ".");
    }
}
