using System.Threading.Channels;

namespace ProxyBackup.Repository;

/// <summary>How a restore writes its target.</summary>
public sealed record RestoreOptions
{
    /// <summary>
    /// The target block device is known to read as zeros (a freshly allocated image): zero chunks are
    /// skipped. Files are always created sparse, so this only matters for devices.
    /// </summary>
    public bool TargetIsZeroed { get; init; }

    /// <summary>
    /// A regular file already at the target path is refused instead of replaced: what a person types
    /// may be the wrong path, and a restore must not overwrite a file nobody meant to lose.
    /// </summary>
    public bool RefuseExistingFile { get; init; }
}

public sealed record DiskRestoreStats(long Bytes, long ZeroBytes, long WrittenBytes, double Seconds);

/// <summary>
/// Writes a restore point's disk to a block device or a file: a <see cref="RestoreFeeder"/> hands
/// out the chunks from several regions of the disk in turn; workers (<see cref="ChunkPlacer"/>)
/// fetch, decrypt, decompress and verify them in parallel (<see cref="ChunkBuffers.Loader"/>) and
/// write them at their offsets; every chunk's name and length is checked.
/// </summary>
internal sealed class DiskRestore(StoredChunks chunks, PipelineTuning tuning, ChunkMemory memory)
{
    public async Task<DiskRestoreStats> RunAsync(Manifest manifest, string targetPath, RestoreOptions options, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var target = BlockSource.OpenWrite(targetPath, manifest.DiskSize, options.RefuseExistingFile);
        try
        {
            using (target) return await WriteAsync(manifest, target, options, progress, ct).ConfigureAwait(false);
        }
        catch when (target.CreatedFile)
        {
            // A half-written file would look like a disk; only what this restore created is removed.
            AtomicFile.TryDelete(targetPath);
            throw;
        }
    }

    private async Task<DiskRestoreStats> WriteAsync(Manifest manifest, BlockSource target, RestoreOptions options, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        var skipZeros = !target.IsBlockDevice || options.TargetIsZeroed;
        // Reserving the data ranges first lets ext4 take parallel direct writes: writes into holes
        // allocate blocks under the inode's exclusive lock and would run one at a time.
        if (!target.IsBlockDevice) PreallocateData(target, manifest);
        var meter = new ProgressMeter($"restore {Path.GetFileName(target.Path)}", manifest.DiskSize, progress);
        // Twice the cores: O_DIRECT writes block, and a worker waiting on the disk leaves its core to
        // another. Many more where chunk hashes are batched: 16 of them wait for each batch. Besides
        // them, a chunk of zeros where zero chunks must be written.
        using var buffers = await ChunkBuffers.ReserveAsync(memory, tuning, manifest.ChunkSize, tuning.RestoreWorkers,
            skipZeros ? 0 : manifest.ChunkSize, meter.ReportWaitingForMemory, ct).ConfigureAwait(false);
        meter.Start();
        var workers = buffers.Workers;
        var hasher = new ChunkHasher(chunks.NameKey, workers, tuning);
        // The feeder runs this many chunks ahead of the workers, starting to read their files.
        var feeder = new RestoreFeeder(chunks.Store, manifest, 4 * workers);
        using var zeros = skipZeros ? null : new AlignedBuffer(manifest.ChunkSize);
        var placer = new ChunkPlacer(target, manifest, zeros, meter);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = failed.Token;

        void Work(int worker)
        {
            using var codec = chunks.NewCodec(hasher);
            placer.PlaceAll(feeder, buffers.ForWorker(worker, chunks.Store, codec), token);
        }

        var tasks = new List<Task> { Task.Run(() => feeder.FeedAsync(DiskRegions.Interleaved(manifest.Chunks.Count, tuning.RestoreRegions), token), token) };
        tasks.AddRange(hasher.StartWorkers(workers, Work, token));
        await DiskBackup.WhenAllOrFirstFailure(tasks, failed).ConfigureAwait(false);
        target.Flush();
        meter.Report();
        return new DiskRestoreStats(manifest.DiskSize, placer.ZeroBytes, placer.WrittenBytes, meter.Elapsed.TotalSeconds);
    }

    private static long DataBytes(Manifest manifest) =>
        Enumerable.Range(0, manifest.Chunks.Count).Where(i => !manifest.Chunks[i].IsZero).Sum(i => (long)manifest.ChunkLength(i));

    /// <summary>Reserves blocks for every run of data chunks; zero chunks stay holes, so the file stays sparse.</summary>
    private static void PreallocateData(BlockSource target, Manifest manifest)
    {
        var start = -1;
        for (var i = 0; i <= manifest.Chunks.Count; i++)
        {
            var data = i < manifest.Chunks.Count && !manifest.Chunks[i].IsZero;
            if (data && start < 0) start = i;
            if (data || start < 0) continue;
            var offset = (long)start * manifest.ChunkSize;
            var end = Math.Min((long)i * manifest.ChunkSize, manifest.DiskSize);
            switch (Native.Preallocate(target.Handle, offset, end - offset))
            {
                case 0: break;
                case Native.Enospc:
                    throw new RepositoryException($"No room for the restored disk on the file system of {target.Path}: its data needs {DataBytes(manifest).ToString("N0", System.Globalization.CultureInfo.InvariantCulture)} bytes. Free space or restore elsewhere.");
                default: return; // the file system cannot reserve; the writes allocate as they go
            }
            start = -1;
        }
    }
}

/// <summary>
/// Restore stage 1: hands out a manifest's chunk positions in the order given, asking the store to
/// start reading each chunk file as it goes, so that the storage works ahead of the workers.
/// </summary>
internal sealed class RestoreFeeder(IChunkStore store, Manifest manifest, int ahead)
{
    private readonly Channel<int> _positions = Channel.CreateBounded<int>(ahead);

    public ChannelReader<int> Positions => _positions.Reader;

    public async Task FeedAsync(IEnumerable<int> order, CancellationToken ct)
    {
        try
        {
            foreach (var i in order)
            {
                await _positions.Writer.WriteAsync(i, ct).ConfigureAwait(false);
                if (!manifest.Chunks[i].IsZero) store.ReadAhead(manifest.Chunks[i]);
            }
            _positions.Writer.Complete();
        }
        catch (Exception e)
        {
            _positions.Writer.TryComplete(e);
            throw;
        }
    }
}

/// <summary>
/// Restore stage 2, run by every worker: loads each chunk through the worker's checked
/// <see cref="ChunkBuffers.Loader"/>, checks its length against the manifest, and writes it at its
/// offset; a zero chunk is written from <c>zeros</c>, or skipped where the target already reads as zeros (null).
/// </summary>
internal sealed class ChunkPlacer(BlockSource target, Manifest manifest, AlignedBuffer? zeros, ProgressMeter meter)
{
    private long _zeroBytes;
    private long _writtenBytes;

    public long ZeroBytes => Interlocked.Read(ref _zeroBytes);
    public long WrittenBytes => Interlocked.Read(ref _writtenBytes);

    public void PlaceAll(RestoreFeeder feeder, ChunkBuffers.Loader loader, CancellationToken ct)
    {
        while (feeder.Positions.WaitToReadAsync(ct).AsTask().GetAwaiter().GetResult())
        {
            while (feeder.Positions.TryRead(out var i))
            {
                ct.ThrowIfCancellationRequested();
                var length = manifest.ChunkLength(i);
                var offset = (long)i * manifest.ChunkSize;
                var id = manifest.Chunks[i];
                if (id.IsZero)
                {
                    Interlocked.Add(ref _zeroBytes, length);
                    if (zeros is not null) target.Write(zeros.GetSpan()[..length], offset);
                }
                else
                {
                    var data = loader.Load(id, ct);
                    manifest.CheckChunkLength(i, id, data.Length);
                    target.Write(data, offset);
                    Interlocked.Add(ref _writtenBytes, data.Length);
                }
                meter.Add(length, 0);
            }
        }
    }
}
