using System.Diagnostics;
using System.Security.Cryptography;

namespace ProxyBackup.Repository;

/// <summary>
/// Computes chunk names (SHA-256, or HMAC-SHA256 with the repository's name key) for the worker
/// threads of one backup, restore or verify. Where the CPU has AVX-512 and enough workers hash at
/// the same time, concurrent calls are gathered into batches of up to 16 and hashed side by side
/// (<see cref="Sha256Lanes"/>); a caller blocks until its batch is done. Hashing is the largest
/// CPU cost of incrementals and restores, and the batch does it in about half the core time.
/// </summary>
internal sealed unsafe class ChunkHasher
{
    // The first caller of a batch waits PipelineTuning.BatchFillTime for the others: chunks reach the
    // hash at disk speed, so the wait is paid in full only at the end of a run.
    private readonly PipelineTuning _tuning;
    private readonly byte[]? _key;
    private readonly byte[]? _innerPrefix;
    private readonly byte[]? _outerPrefix;
    private readonly bool _batching;
    private readonly object _gate = new();
    private Batch? _filling;
    private long _laneBatches;
    private long _fillTimeouts;
    // The callers that may still come; a batch holding all of them has no one left to wait for.
    private int _callers;

    /// <param name="key">The HMAC key for keyed names; null for plain SHA-256.</param>
    /// <param name="concurrentCallers">How many threads will call at once; batching needs enough of them to fill a batch.</param>
    /// <param name="platformOnly">
    /// Hash with the platform's SHA-256 only: verify checks names with an implementation independent
    /// of the lanes that may have written them (docs/architecture.md, "Verify").
    /// </param>
    public ChunkHasher(byte[]? key, int concurrentCallers, PipelineTuning? tuning = null, bool platformOnly = false)
    {
        _key = key;
        _tuning = tuning ?? PipelineTuning.Default;
        _batching = !platformOnly && Sha256Lanes.IsSupported && concurrentCallers >= _tuning.BatchingWorkers;
        _callers = concurrentCallers;
        if (key is null) return;
        // HMAC (RFC 2104): the key, zero-padded to a block, XOR 0x36 before the message and 0x5c before the inner digest.
        var padded = new byte[64];
        (key.Length > 64 ? SHA256.HashData(key) : key).CopyTo(padded, 0);
        _innerPrefix = padded.Select(b => (byte)(b ^ 0x36)).ToArray();
        _outerPrefix = padded.Select(b => (byte)(b ^ 0x5c)).ToArray();
    }

    public bool IsBatching => _batching;

    /// <summary>How many batches were hashed in lanes (the rest of the calls hashed alone).</summary>
    public long LaneBatches => Interlocked.Read(ref _laneBatches);

    /// <summary>How many batches were closed by the fill time rather than by filling up or by the callers leaving.</summary>
    public long FillTimeouts => Interlocked.Read(ref _fillTimeouts);

    /// <summary>
    /// A caller has finished and will not hash again (call it once per caller, in a finally). At the
    /// end of a run the last batch then closes as soon as it holds all who are left, not after the fill time.
    /// </summary>
    public void Leave()
    {
        lock (_gate)
        {
            _callers--;
            if (_filling is { } batch && batch.Count >= _callers) Close(batch);
        }
    }

    /// <summary>
    /// Starts <paramref name="workers"/> threads that call this hasher, each running
    /// <paramref name="work"/> with its number, and leaves for each when it ends, however it ends.
    /// </summary>
    public IEnumerable<Task> StartWorkers(int workers, Action<int> work, CancellationToken ct) =>
        Enumerable.Range(0, workers).Select(worker => Task.Factory.StartNew(() =>
        {
            try { work(worker); }
            finally { Leave(); }
        }, ct, TaskCreationOptions.LongRunning, TaskScheduler.Default)).ToList();

    /// <summary>
    /// The workers an operation runs: enough to fill batches when the hash can batch and the
    /// repository's memory budget allows (<see cref="ChunkMemory"/>), else <paramref name="unbatched"/>.
    /// </summary>
    public static Task<ChunkMemory.Lease> ReserveWorkersAsync(ChunkMemory memory, PipelineTuning tuning, long bytesPerWorker, long fixedBytes, int unbatched, Action waiting, CancellationToken ct,
        ChunkMemory.Admission? admission = null, bool platformOnly = false) =>
        memory.ReserveAsync(bytesPerWorker, fixedBytes, !platformOnly && Sha256Lanes.IsSupported ? Math.Max(tuning.BatchingWorkers, unbatched) : unbatched, unbatched, waiting, ct, admission);

    /// <summary>The name of a chunk: its digest, which must not be the all-zero marker of zero chunks.</summary>
    public ChunkId Name(ReadOnlySpan<byte> data)
    {
        Span<byte> digest = stackalloc byte[32];
        Hash(data, digest);
        var id = ChunkId.Read(digest);
        // A real digest of all zeros is beyond any chance; finding one means something is broken.
        return id.IsZero ? throw new CryptographicException("Digest collided with the zero marker.") : id;
    }

    public void Hash(ReadOnlySpan<byte> data, Span<byte> digest)
    {
        if (!_batching)
        {
            HashAlone(data, digest);
            return;
        }
        fixed (byte* message = data)
        {
            Batch batch;
            int lane;
            lock (_gate)
            {
                batch = _filling ??= new Batch();
                lane = batch.Add((nint)message, data.Length);
                if (batch.Count == Sha256Lanes.Width || batch.Count >= _callers) Close(batch);
                if (lane == 0)
                {
                    var deadline = Stopwatch.GetTimestamp() + (long)(_tuning.BatchFillTime.TotalSeconds * Stopwatch.Frequency);
                    while (_filling == batch)
                    {
                        var left = deadline - Stopwatch.GetTimestamp();
                        if (left <= 0) break;
                        Monitor.Wait(_gate, TimeSpan.FromSeconds((double)left / Stopwatch.Frequency));
                    }
                    if (_filling == batch)
                    {
                        Close(batch);
                        _fillTimeouts++;
                    }
                }
                else
                {
                    while (!batch.Done && !(batch.Closed && batch.Count < _tuning.MinimumBatch)) Monitor.Wait(_gate);
                }
            }
            if (batch.Count < _tuning.MinimumBatch)
            {
                HashAlone(data, digest);
                return;
            }
            if (lane == 0) Run(batch);
            if (batch.Failure is not null) throw new CryptographicException("Hashing a batch of chunks failed.", batch.Failure);
            batch.Digest(lane).CopyTo(digest);
        }
    }

    private void HashAlone(ReadOnlySpan<byte> data, Span<byte> digest)
    {
        if (_key is null) SHA256.HashData(data, digest);
        else HMACSHA256.HashData(_key, data, digest);
    }

    private void Close(Batch batch)
    {
        batch.Closed = true;
        _filling = null;
        Monitor.PulseAll(_gate);
    }

    private void Run(Batch batch)
    {
        try
        {
            Interlocked.Increment(ref _laneBatches);
            var messages = batch.Messages[..batch.Count];
            var lengths = batch.Lengths[..batch.Count];
            if (_key is null)
            {
                Sha256Lanes.Hash([], messages, lengths, batch.Digests);
            }
            else
            {
                var inner = new byte[32 * batch.Count];
                Sha256Lanes.Hash(_innerPrefix, messages, lengths, inner);
                fixed (byte* innerDigests = inner)
                {
                    Span<nint> innerMessages = stackalloc nint[batch.Count];
                    Span<int> innerLengths = stackalloc int[batch.Count];
                    for (var i = 0; i < batch.Count; i++) (innerMessages[i], innerLengths[i]) = ((nint)(innerDigests + 32 * i), 32);
                    Sha256Lanes.Hash(_outerPrefix, innerMessages, innerLengths, batch.Digests);
                }
            }
        }
        catch (Exception e)
        {
            // The others waiting on this batch must not take its zeroed digests for names.
            batch.Failure = e;
            throw;
        }
        finally
        {
            lock (_gate)
            {
                batch.Done = true;
                Monitor.PulseAll(_gate);
            }
        }
    }

    private sealed class Batch
    {
        public readonly nint[] Messages = new nint[Sha256Lanes.Width];
        public readonly int[] Lengths = new int[Sha256Lanes.Width];
        public readonly byte[] Digests = new byte[32 * Sha256Lanes.Width];
        public int Count;
        public bool Closed;
        public bool Done;
        public Exception? Failure;

        public int Add(nint message, int length)
        {
            Messages[Count] = message;
            Lengths[Count] = length;
            return Count++;
        }

        public ReadOnlySpan<byte> Digest(int lane) => Digests.AsSpan(32 * lane, 32);
    }
}
