using System.Buffers;

namespace ProxyBackup.Repository;

/// <summary>
/// A repository's chunks as the pipelines (backup, restore, streams, verify, GC, statistics) use
/// them: the store they live in, the format they are encoded in (chunk size, zstd level, keys), and
/// the checks that find and set aside damage (docs/repository-format.md, "Damage and healing").
/// The pipelines take this and <see cref="StoredPoints"/>, never the <see cref="BackupRepository"/>
/// facade, so that any <see cref="IChunkStore"/> serves them.
/// </summary>
internal sealed class StoredChunks(IChunkStore store, int chunkSize, int compressionLevel, MasterKeys? keys, TimeProvider clock)
{
    public IChunkStore Store => store;
    public int ChunkSize => chunkSize;

    /// <summary>The key that names chunks (HMAC), or null where names are plain SHA-256.</summary>
    public byte[]? NameKey => keys?.NameKey;

    public bool Encrypted => keys is not null;

    /// <summary>The time a dedup hit sets on the chunk it reuses, and a quarantine on the chunk it sets aside.</summary>
    public DateTimeOffset Now => clock.GetUtcNow();

    /// <summary>The largest a chunk file can be: the encoding byte, a chunk stored raw, the cipher's nonce and tag.</summary>
    public static int FileCapacity(int chunkSize) => 1 + chunkSize + BlobCipher.Overhead;

    /// <summary>A codec for one worker; <paramref name="hasher"/> is the operation's shared one, so that it can batch.</summary>
    public ChunkCodec NewCodec(ChunkHasher? hasher = null) => new(chunkSize, compressionLevel, keys, hasher);

    /// <summary>Whether the stored chunk reads, decodes and hashes to its name (a checked read, as restore does).</summary>
    public bool IsSound(ChunkId id, ChunkCodec codec)
    {
        var file = ArrayPool<byte>.Shared.Rent(FileCapacity(chunkSize));
        try
        {
            return FileIsSound(id, codec, file.AsSpan(0, store.Read(id, file)));
        }
        catch (CorruptDataException)
        {
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(file);
        }
    }

    /// <summary>Sets a chunk that failed its check aside (<see cref="IChunkStore.SetAside"/>), rechecked once aside with <paramref name="codec"/>.</summary>
    public ChunkQuarantine Quarantine(ChunkId id, ChunkCodec codec) => store.SetAside(id, Now, file => FileIsSound(id, codec, file));

    private bool FileIsSound(ChunkId id, ChunkCodec codec, ReadOnlySpan<byte> file)
    {
        var scratch = ArrayPool<byte>.Shared.Rent(chunkSize);
        try
        {
            codec.Open(id, file, scratch);
            return true;
        }
        catch (CorruptDataException)
        {
            return false;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(scratch);
        }
    }
}
