using ProxyBackup.Repository;

namespace ProxyBackup.Repository.Tests;

/// <summary>
/// Chunks in memory, to <see cref="IChunkStore"/>'s contract: the pipelines run on it as on the
/// local store, and a test damages or drops a chunk by its name, or sees what went where.
/// </summary>
internal sealed class MemoryChunkStore(TimeProvider? time = null) : IChunkStore
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly object _gate = new();
    private readonly Dictionary<ChunkId, (byte[] File, DateTimeOffset Time)> _chunks = [];
    private readonly Dictionary<ChunkId, long> _stamps = [];
    private long _lastStamp;
    private readonly Dictionary<ChunkId, (byte[] File, DateTimeOffset Time)> _setAside = [];

    public int Count { get { lock (_gate) return _chunks.Count; } }

    /// <summary>Called after each write, outside the lock: a test stops an operation at a chosen chunk.</summary>
    public Action<int>? AfterWrite { get; set; }
    public int SetAsideCount { get { lock (_gate) return _setAside.Count; } }

    public long? Length(ChunkId id)
    {
        lock (_gate) return _chunks.TryGetValue(id, out var c) && c.File.Length > 0 ? c.File.Length : null;
    }

    public bool Touch(ChunkId id, DateTimeOffset now)
    {
        lock (_gate)
        {
            if (!_chunks.TryGetValue(id, out var c) || c.File.Length == 0) return false;
            _chunks[id] = (c.File, now);
            _stamps[id] = ++_lastStamp;
            return true;
        }
    }

    public long Write(ChunkId id, ReadOnlySpan<byte> file)
    {
        var copy = file.ToArray();
        long stamp;
        int count;
        lock (_gate)
        {
            _chunks[id] = (copy, _time.GetUtcNow());
            stamp = _stamps[id] = ++_lastStamp;
            count = _chunks.Count;
        }
        AfterWrite?.Invoke(count);
        return stamp;
    }

    public bool RemoveUnchanged(ChunkId id, long stamp)
    {
        lock (_gate)
        {
            if (!_chunks.ContainsKey(id) || _stamps[id] != stamp) return false;
            _chunks.Remove(id);
            return true;
        }
    }

    public int Read(ChunkId id, Span<byte> buffer)
    {
        byte[] file;
        lock (_gate)
            file = _chunks.TryGetValue(id, out var c) ? c.File : throw new CorruptDataException($"Chunk {id} is missing from the repository.");
        if (file.Length > buffer.Length) throw new CorruptDataException($"Chunk {id} is larger than any chunk can be ({file.Length} bytes).");
        file.CopyTo(buffer);
        return file.Length;
    }

    public void ReadAhead(ChunkId id) { }

    public ChunkQuarantine SetAside(ChunkId id, DateTimeOffset now, Func<ReadOnlySpan<byte>, bool> soundNow)
    {
        lock (_gate)
        {
            if (!_chunks.TryGetValue(id, out var c)) return ChunkQuarantine.NotMoved;
            if (soundNow(c.File)) return ChunkQuarantine.SoundNow;
            _chunks.Remove(id);
            _setAside[id] = (c.File, now);
            return ChunkQuarantine.MovedAside;
        }
    }

    // The sweep holds the gate while it judges and removes: a touch is never lost between the two.
    public IReadOnlyList<ChunkId> Missing(IReadOnlyCollection<ChunkId> reused, DateTimeOffset since) => [];

    public ChunkSweep Sweep(IReadOnlySet<ChunkId> keep, DateTimeOffset cutoff, CancellationToken ct)
    {
        lock (_gate)
        {
            int removed = 0, inGrace = 0;
            long freed = 0;
            foreach (var (id, c) in _chunks.ToList())
            {
                if (keep.Contains(id)) continue;
                if (c.Time > cutoff) { inGrace++; continue; }
                _chunks.Remove(id);
                removed++;
                freed += c.File.Length;
            }
            foreach (var (id, c) in _setAside.Where(a => a.Value.Time <= cutoff).ToList())
            {
                _setAside.Remove(id);
                freed += c.File.Length;
            }
            return new ChunkSweep(removed, freed, inGrace);
        }
    }

    /// <summary>Flips a bit in the stored chunk, as rot on a disk would.</summary>
    public void Damage(ChunkId id)
    {
        lock (_gate) _chunks[id].File[_chunks[id].File.Length / 2] ^= 0x10;
    }

    public void Drop(ChunkId id)
    {
        lock (_gate) _chunks.Remove(id);
    }
}
