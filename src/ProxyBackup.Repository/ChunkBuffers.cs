using System.Collections.Concurrent;

namespace ProxyBackup.Repository;

/// <summary>
/// The chunk buffers of a pool of workers that read verified chunks (restore, verify): one per
/// worker and a few spares. A chunk that must be decoded borrows a spare for its plaintext; the
/// worker keeps that one and gives back the buffer its file was read into, so memory is one buffer
/// per worker, not two. Many workers wait for batched hashes (<see cref="ChunkHasher"/>), which
/// makes the difference.
/// </summary>
internal sealed class ChunkBuffers : IDisposable
{
    // A chunk file is read one byte before a 4 KiB boundary: a raw chunk's data (after its encoding
    // byte) is then aligned and goes from here to an O_DIRECT write with no copy.
    private const int FileOffset = 4095;

    private readonly ChunkMemory.Lease _lease;
    private readonly List<AlignedBuffer> _all;
    private readonly BlockingCollection<AlignedBuffer> _spares = new();

    private ChunkBuffers(ChunkMemory.Lease lease, int bufferBytes, int spares)
    {
        _lease = lease;
        _all = Enumerable.Range(0, lease.Workers + spares).Select(_ => new AlignedBuffer(bufferBytes)).ToList();
        foreach (var spare in _all.Skip(lease.Workers)) _spares.Add(spare);
    }

    /// <summary>How many workers the repository's memory budget granted; one buffer each.</summary>
    public int Workers => _lease.Workers;

    /// <summary>
    /// Buffers for as many workers as the repository's memory budget grants (<see cref="ChunkHasher.ReserveWorkersAsync"/>),
    /// waiting if it must; <paramref name="extraBytes"/> is what the operation holds besides them.
    /// </summary>
    public static async Task<ChunkBuffers> ReserveAsync(ChunkMemory memory, PipelineTuning tuning, int chunkSize, int unbatched, long extraBytes, Action waiting, CancellationToken ct,
        bool platformOnly = false)
    {
        var bufferBytes = FileOffset + StoredChunks.FileCapacity(chunkSize);
        var spares = tuning.SpareBuffers;
        var lease = await ChunkHasher.ReserveWorkersAsync(memory, tuning, bufferBytes, spares * (long)bufferBytes + extraBytes, unbatched, waiting, ct, platformOnly: platformOnly).ConfigureAwait(false);
        return new ChunkBuffers(lease, bufferBytes, spares);
    }

    /// <summary>The reader for worker number <paramref name="worker"/>, which owns its codec.</summary>
    public Loader ForWorker(int worker, IChunkStore store, ChunkCodec codec) => new(this, store, codec, _all[worker]);

    public void Dispose()
    {
        foreach (var b in _all) ((IDisposable)b).Dispose();
        _spares.Dispose();
        _lease.Dispose();
    }

    internal sealed class Loader(ChunkBuffers buffers, IChunkStore store, ChunkCodec codec, AlignedBuffer own)
    {
        /// <summary>
        /// Reads, decrypts, decompresses and checks a chunk; throws <see cref="CorruptDataException"/>
        /// when it is not what its name says. The bytes are 4 KiB-aligned when the chunk is stored raw
        /// or decoded, and stay valid until the next call.
        /// </summary>
        public ReadOnlySpan<byte> Load(ChunkId id, CancellationToken ct)
        {
            var file = own.GetSpan()[FileOffset..];
            file = file[..store.Read(id, file)];
            var plain = codec.Decodes(file) ? buffers._spares.Take(ct) : null;
            ReadOnlySpan<byte> data;
            try
            {
                data = codec.Unpack(id, file, plain is null ? default : plain.GetSpan());
            }
            catch when (plain is not null)
            {
                // Verify goes on after a damaged chunk; a spare lost here would stall the others.
                buffers._spares.Add(plain);
                throw;
            }
            if (plain is not null)
            {
                buffers._spares.Add(own);
                own = plain;
            }
            // Checked after the file's buffer went back: the wait for a batched hash can be long.
            codec.CheckName(id, data);
            return data;
        }
    }
}
