using System.Collections.Concurrent;
using System.Threading.Channels;

namespace ProxyBackup.Repository;

/// <summary>
/// Reads one disk into the repository, in three stages: a <see cref="ChunkReader"/> fills a fixed
/// set of aligned chunk buffers, taking the chunks from several regions of the disk in turn
/// (<see cref="DiskRegions"/>); workers, more than the cores (<see cref="ChunkSorter"/>), detect
/// zero chunks without hashing, hash the others, skip those equal to the previous restore point at
/// the same position, and hand the chunks the repository lacks to a pool of encoders
/// (<see cref="ChunkWriter"/>) that compress, encrypt and write them. Memory stays at (buffers +
/// encoders) × chunk size whatever the disk size.
/// </summary>
/// <param name="abandonable">Receives each chunk this backup stored that no restore point referenced to its knowledge (not the parent's at that position, not a damaged copy replaced), with its stamp: what the writer removes again when it fails (<see cref="IChunkStore.RemoveUnchanged"/>).</param>
/// <param name="reused">Receives each chunk this backup found stored and relies on: what it checks is still there before it commits (<see cref="IChunkStore.Missing"/>).</param>
internal sealed class DiskBackup(StoredChunks chunks, PipelineTuning tuning, ChunkMemory memory, ChunkMemory.Admission? admission, ConcurrentBag<(ChunkId Id, long Stamp)> abandonable, ConcurrentBag<ChunkId> reused)
{
    /// <summary>The read-ahead buffers and the encoders, besides one chunk buffer per worker.</summary>
    private static long FixedBytes(PipelineTuning tuning, int chunkSize, bool encrypted) =>
        tuning.BackupReadAhead * (long)chunkSize + tuning.BackupEncoders * ChunkCodec.EncoderBytes(chunkSize, encrypted);

    /// <summary>The memory a backup needs at its fewest workers (as many as its encoders): what each concurrent job must find in the budget.</summary>
    public static long FewestBytes(PipelineTuning tuning, int chunkSize, bool encrypted) =>
        FixedBytes(tuning, chunkSize, encrypted) + tuning.BackupEncoders * (long)chunkSize;

    public async Task<(Manifest Manifest, DiskBackupStats Stats)> RunAsync(string sourcePath, Manifest? previous, IProgress<TransferProgress>? progress, CancellationToken ct)
    {
        using var source = BlockSource.OpenRead(sourcePath);
        var chunkSize = chunks.ChunkSize;
        var count = Manifest.ChunkCount(source.Size, chunkSize);
        var meter = new ProgressMeter($"backup {Path.GetFileName(sourcePath)}", source.Size, progress, storesData: true);
        // Workers hash and compare, each with its chunk buffer; where hashes are batched, 16 of them wait for each batch.
        using var lease = await ChunkHasher.ReserveWorkersAsync(memory, tuning, chunkSize,
            FixedBytes(tuning, chunkSize, chunks.Encrypted), tuning.BackupEncoders, meter.ReportWaitingForMemory, ct, admission).ConfigureAwait(false);
        meter.Start();
        var workers = lease.Workers;
        // One buffer per worker and a few for the reader to fill ahead.
        using var reader = new ChunkReader(source, chunkSize, workers + tuning.BackupReadAhead);
        using var writer = new ChunkWriter(chunks, tuning.BackupEncoders, checkStored: previous is null, abandonable);
        var hasher = new ChunkHasher(chunks.NameKey, workers, tuning);
        var sorter = new ChunkSorter(chunks, hasher, previous, writer, meter, count, reused);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var tasks = new List<Task> { Task.Run(() => reader.ReadAllAsync(DiskRegions.Interleaved(count, tuning.BackupRegions), failed.Token), failed.Token) };
        tasks.AddRange(hasher.StartWorkers(workers, _ => sorter.SortAll(reader, failed.Token), failed.Token));
        await WhenAllOrFirstFailure(tasks, failed).ConfigureAwait(false);
        meter.Report();
        var stats = new DiskBackupStats
        {
            Read = source.Size, Zero = sorter.ZeroBytes, Changed = previous is null ? source.Size - sorter.ZeroBytes : sorter.ChangedBytes,
            NewStored = writer.StoredBytes, NewChunks = writer.ChunksStored, Repaired = writer.Repaired, Seconds = meter.Elapsed.TotalSeconds,
        };
        return (new Manifest(source.Size, chunkSize, sorter.Ids), stats);
    }

    /// <summary>Waits for all; the first failure cancels the others and is the one thrown (not a cancellation it caused).</summary>
    internal static async Task WhenAllOrFirstFailure(List<Task> tasks, CancellationTokenSource cancelOthers)
    {
        Exception? first = null;
        var pending = tasks.ToList();
        while (pending.Count > 0)
        {
            var done = await Task.WhenAny(pending).ConfigureAwait(false);
            pending.Remove(done);
            if (done.IsFaulted && first is null)
            {
                first = done.Exception!.InnerException!;
                await cancelOthers.CancelAsync().ConfigureAwait(false);
            }
            else if (done.IsCanceled && first is null && cancelOthers.IsCancellationRequested)
            {
                first ??= new OperationCanceledException(cancelOthers.Token);
            }
        }
        if (first is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }
}

/// <summary>A chunk the reader filled: its position in the disk, the buffer it is in, its length.</summary>
internal readonly record struct ReadChunk(int Index, AlignedBuffer Buffer, int Length);

/// <summary>
/// Backup stage 1: reads a disk's chunks, in the order it is given, into a fixed set of aligned
/// buffers (O_DIRECT needs them) and hands each on; a buffer is filled again once its chunk is done.
/// </summary>
internal sealed class ChunkReader : IDisposable
{
    private readonly BlockSource _source;
    private readonly int _chunkSize;
    private readonly List<AlignedBuffer> _buffers;
    private readonly Channel<AlignedBuffer> _free = Channel.CreateUnbounded<AlignedBuffer>();
    private readonly Channel<ReadChunk> _read;

    public ChunkReader(BlockSource source, int chunkSize, int buffers)
    {
        _source = source;
        _chunkSize = chunkSize;
        _buffers = [.. Enumerable.Range(0, buffers).Select(_ => new AlignedBuffer(chunkSize))];
        foreach (var b in _buffers) _free.Writer.TryWrite(b);
        _read = Channel.CreateBounded<ReadChunk>(buffers);
    }

    /// <summary>The chunks read, in the order read; completed (or failed) when the reader ends.</summary>
    public ChannelReader<ReadChunk> Chunks => _read.Reader;

    public async Task ReadAllAsync(IEnumerable<int> order, CancellationToken ct)
    {
        try
        {
            foreach (var i in order)
            {
                var buffer = await _free.Reader.ReadAsync(ct).ConfigureAwait(false);
                var offset = (long)i * _chunkSize;
                var expected = (int)Math.Min(_chunkSize, _source.Size - offset);
                var n = _source.ReadFull(buffer.GetSpan()[..expected], offset);
                if (n != expected) throw new IOException($"{_source.Path} ended at byte {offset + n}, before its size of {_source.Size} bytes.");
                await _read.Writer.WriteAsync(new ReadChunk(i, buffer, n), ct).ConfigureAwait(false);
            }
            _read.Writer.Complete();
        }
        catch (Exception e)
        {
            _read.Writer.TryComplete(e);
            throw;
        }
    }

    /// <summary>Gives a chunk's buffer back once the chunk is done with.</summary>
    public void Release(ReadChunk chunk) => _free.Writer.TryWrite(chunk.Buffer);

    public void Dispose()
    {
        foreach (var b in _buffers) ((IDisposable)b).Dispose();
    }
}

/// <summary>
/// Backup stage 2, run by every worker: tells zero chunks apart without hashing them, names the
/// others, compares each with the parent's chunk at its position, and sends to the
/// <see cref="ChunkWriter"/> what the store lacks (checked with a touch the first time a name
/// occurs, so that a GC beside keeps it) and, on a full backup, what it holds, to be checked.
/// </summary>
internal sealed class ChunkSorter(StoredChunks chunks, ChunkHasher hasher, Manifest? previous, ChunkWriter writer, ProgressMeter meter, int count, ConcurrentBag<ChunkId> reused)
{
    private readonly ConcurrentDictionary<ChunkId, byte> _seen = new();
    private long _zero;
    private long _changed;

    /// <summary>The disk's chunk names by position, complete once every worker has ended.</summary>
    public ChunkId[] Ids { get; } = new ChunkId[count];

    public long ZeroBytes => Interlocked.Read(ref _zero);

    /// <summary>Bytes in chunks that differ from the parent's at the same position.</summary>
    public long ChangedBytes => Interlocked.Read(ref _changed);

    public void SortAll(ChunkReader reader, CancellationToken ct)
    {
        while (reader.Chunks.WaitToReadAsync(ct).AsTask().GetAwaiter().GetResult())
        {
            while (reader.Chunks.TryRead(out var chunk))
            {
                ct.ThrowIfCancellationRequested();
                var stored = Sort(chunk.Index, chunk.Buffer.GetSpan()[..chunk.Length], ct);
                reader.Release(chunk);
                meter.Add(chunk.Length, stored);
            }
        }
    }

    /// <summary>Sorts one chunk; returns the bytes stored for it.</summary>
    private long Sort(int index, ReadOnlySpan<byte> data, CancellationToken ct)
    {
        var parent = previous is not null && index < previous.Chunks.Count ? previous.Chunks[index] : (ChunkId?)null;
        if (!data.ContainsAnyExcept((byte)0))
        {
            Ids[index] = ChunkId.Zero;
            Interlocked.Add(ref _zero, data.Length);
            if (parent is { IsZero: false }) Interlocked.Add(ref _changed, data.Length);
            return 0;
        }
        var id = hasher.Name(data);
        Ids[index] = id;
        var unchanged = parent == id;
        if (!unchanged) Interlocked.Add(ref _changed, data.Length);
        // Even an unchanged chunk is written when the store lacks it (verify moved it aside, or it
        // was lost): a restore point never references a chunk that is not there, and the older
        // points that reference it are whole again.
        var present = _seen.TryAdd(id, 0) ? chunks.Store.Touch(id, chunks.Now) : (bool?)null;
        if (present == true) reused.Add(id);
        return present is { } stored ? writer.Store(id, data, stored, unchanged, ct) : 0;
    }
}

/// <summary>
/// Backup stage 3: a pool of codecs (no more than the workers: each holds an encoded chunk's buffer)
/// that compress, encrypt and store chunks. A full backup trusts no stored chunk by its name alone:
/// it reads back each one it would reuse and replaces a damaged one (docs/repository-format.md,
/// "Damage and healing").
/// </summary>
/// <param name="abandonable">Receives each chunk stored that no restore point referenced to this backup's knowledge, with its stamp: what the writer removes again when it fails (<see cref="IChunkStore.RemoveUnchanged"/>).</param>
internal sealed class ChunkWriter(StoredChunks chunks, int encoders, bool checkStored, ConcurrentBag<(ChunkId Id, long Stamp)> abandonable) : IDisposable
{
    private readonly BlockingCollection<ChunkCodec> _codecs = new(new ConcurrentQueue<ChunkCodec>(Enumerable.Range(0, encoders).Select(_ => chunks.NewCodec())));
    private long _storedBytes;
    private int _storedChunks;
    private int _repaired;

    public long StoredBytes => Interlocked.Read(ref _storedBytes);
    public int ChunksStored => Volatile.Read(ref _storedChunks);
    public int Repaired => Volatile.Read(ref _repaired);

    /// <summary>
    /// Stores a chunk the store lacks; one it holds (<paramref name="present"/>) is reused as it is,
    /// or, by a full backup, checked and replaced when damaged; returns the bytes stored.
    /// </summary>
    public long Store(ChunkId id, ReadOnlySpan<byte> data, bool present, bool unchanged, CancellationToken ct)
    {
        // Reused without a codec: no encoder's buffer is held for a chunk only deduplicated.
        if (present && !checkStored) return 0;
        var codec = _codecs.Take(ct);
        try
        {
            var damaged = present && !chunks.IsSound(id, codec) && chunks.Quarantine(id, codec) != ChunkQuarantine.SoundNow;
            if (present && !damaged) return 0;
            var file = codec.Encode(id, data);
            var stamp = chunks.Store.Write(id, file.Span);
            if (!unchanged && !damaged) abandonable.Add((id, stamp));
            if (damaged) Interlocked.Increment(ref _repaired);
            Interlocked.Add(ref _storedBytes, file.Length);
            Interlocked.Increment(ref _storedChunks);
            return file.Length;
        }
        finally
        {
            _codecs.Add(codec);
        }
    }

    public void Dispose()
    {
        foreach (var codec in _codecs) codec.Dispose();
        _codecs.Dispose();
    }
}
