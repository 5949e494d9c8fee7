using System.Collections.Concurrent;
using System.Threading.Channels;

namespace ProxyBackup.Repository;

/// <summary>
/// Reads one disk into the repository: a reader fills a fixed set of aligned chunk buffers, taking
/// the chunks from several regions of the disk in turn (<see cref="DiskRegions"/>); workers (more than the cores) detect zero chunks without hashing, hash the others, skip those
/// equal to the previous restore point at the same position, and hand the chunks the repository
/// lacks to a pool of encoders that compress, encrypt and write them. Memory stays at (buffers +
/// encoders) × chunk size whatever the disk size.
/// </summary>
/// <param name="abandonable">Receives each chunk this backup stored that no restore point referenced to its knowledge (not the parent's at that position, not a damaged copy replaced), with its stamp: what the writer removes again when it fails (<see cref="IChunkStore.RemoveUnchanged"/>).</param>
internal sealed class DiskBackup(StoredChunks chunks, PipelineTuning tuning, ChunkMemory memory, ChunkMemory.Admission? admission, ConcurrentBag<(ChunkId Id, long Stamp)> abandonable)
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
        var ids = new ChunkId[count];
        var meter = new ProgressMeter($"backup {Path.GetFileName(sourcePath)}", source.Size, progress, storesData: true);
        // Workers hash and compare, each with its chunk buffer; where hashes are batched, 16 of them wait for each batch.
        var encoderCount = tuning.BackupEncoders;
        using var lease = await ChunkHasher.ReserveWorkersAsync(memory, tuning, chunkSize,
            FixedBytes(tuning, chunkSize, chunks.Encrypted), encoderCount, meter.ReportWaitingForMemory, ct, admission).ConfigureAwait(false);
        meter.Start();
        var workers = lease.Workers;
        var hasher = new ChunkHasher(chunks.NameKey, workers, tuning);
        using var encoders = new BlockingCollection<ChunkCodec>();
        for (var i = 0; i < encoderCount; i++) encoders.Add(chunks.NewCodec());
        long zero = 0, changed = 0, newStored = 0;
        int newChunks = 0, repaired = 0;
        // A full backup trusts no stored chunk by its name alone: it reads back each one it would
        // reuse and replaces a damaged one (docs/repository-format.md, "Damage and healing").
        var checkStored = previous is null;
        var written = new ConcurrentDictionary<ChunkId, byte>();
        // One per worker and a few for the reader to fill ahead.
        var buffers = Enumerable.Range(0, workers + tuning.BackupReadAhead).Select(_ => new AlignedBuffer(chunkSize)).ToList();
        var free = Channel.CreateUnbounded<AlignedBuffer>();
        foreach (var b in buffers) free.Writer.TryWrite(b);
        var work = Channel.CreateBounded<(int Index, AlignedBuffer Buffer, int Length)>(buffers.Count);
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        var token = failed.Token;

        async Task ReadAll()
        {
            try
            {
                foreach (var i in DiskRegions.Interleaved(count, tuning.BackupRegions))
                {
                    var buffer = await free.Reader.ReadAsync(token).ConfigureAwait(false);
                    var offset = (long)i * chunkSize;
                    var expected = (int)Math.Min(chunkSize, source.Size - offset);
                    var n = source.ReadFull(buffer.GetSpan()[..expected], offset);
                    if (n != expected) throw new IOException($"{sourcePath} ended at byte {offset + n}, before its size of {source.Size} bytes.");
                    await work.Writer.WriteAsync((i, buffer, n), token).ConfigureAwait(false);
                }
                work.Writer.Complete();
            }
            catch (Exception e)
            {
                work.Writer.TryComplete(e);
                throw;
            }
        }

        void Work()
        {
            while (work.Reader.WaitToReadAsync(token).AsTask().GetAwaiter().GetResult())
            {
                while (work.Reader.TryRead(out var item))
                {
                    token.ThrowIfCancellationRequested();
                    var data = item.Buffer.GetSpan()[..item.Length];
                    long stored = 0;
                    if (!data.ContainsAnyExcept((byte)0))
                    {
                        ids[item.Index] = ChunkId.Zero;
                        Interlocked.Add(ref zero, item.Length);
                        if (previous is not null && item.Index < previous.Chunks.Count && !previous.Chunks[item.Index].IsZero)
                            Interlocked.Add(ref changed, item.Length);
                    }
                    else
                    {
                        var id = hasher.Name(data);
                        ids[item.Index] = id;
                        var unchanged = previous is not null && item.Index < previous.Chunks.Count && previous.Chunks[item.Index] == id;
                        if (!unchanged) Interlocked.Add(ref changed, item.Length);
                        // Even an unchanged chunk is written when the store lacks it (verify moved it
                        // aside, or it was lost): a restore point never references a chunk that is not
                        // there, and the older points that reference it are whole again.
                        var present = written.TryAdd(id, 0) ? chunks.Store.Touch(id, chunks.Now) : (bool?)null;
                        if (present is false || (present is true && checkStored))
                        {
                            var codec = encoders.Take(token);
                            try
                            {
                                var damaged = present is true && !chunks.IsSound(id, codec)
                                    && chunks.Quarantine(id, codec) != ChunkQuarantine.SoundNow;
                                if (present is false || damaged)
                                {
                                    var file = codec.Encode(id, data);
                                    var stamp = chunks.Store.Write(id, file.Span);
                                    if (!unchanged && !damaged) abandonable.Add((id, stamp));
                                    stored = file.Length;
                                    if (damaged) Interlocked.Increment(ref repaired);
                                }
                            }
                            finally
                            {
                                encoders.Add(codec);
                            }
                            if (stored > 0)
                            {
                                Interlocked.Add(ref newStored, stored);
                                Interlocked.Increment(ref newChunks);
                            }
                        }
                    }
                    free.Writer.TryWrite(item.Buffer);
                    meter.Add(item.Length, stored);
                }
            }
        }

        var tasks = new List<Task> { Task.Run(ReadAll, token) };
        tasks.AddRange(hasher.StartWorkers(workers, _ => Work(), token));
        try
        {
            await WhenAllOrFirstFailure(tasks, failed).ConfigureAwait(false);
        }
        finally
        {
            foreach (var b in buffers) ((IDisposable)b).Dispose();
            foreach (var codec in encoders) codec.Dispose();
        }
        meter.Report();
        var stats = new DiskBackupStats
        {
            Read = source.Size, Zero = zero, Changed = previous is null ? source.Size - zero : changed,
            NewStored = newStored, NewChunks = newChunks, Repaired = repaired, Seconds = meter.Elapsed.TotalSeconds,
        };
        return (new Manifest(source.Size, chunkSize, ids), stats);
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
