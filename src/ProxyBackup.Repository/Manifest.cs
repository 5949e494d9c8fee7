using System.Buffers.Binary;
using System.Security.Cryptography;

namespace ProxyBackup.Repository;

/// <summary>One disk of a restore point: its size, chunk size and chunk names in order (docs/repository-format.md).</summary>
public sealed class Manifest
{
    private static readonly byte[] Magic = "PBMANIF1"u8.ToArray();
    private const int HeaderSize = 24;

    public Manifest(long diskSize, int chunkSize, ChunkId[] chunks)
    {
        if (chunks.Length != ChunkCount(diskSize, chunkSize))
            throw new ArgumentException($"A disk of {diskSize} bytes in chunks of {chunkSize} has {ChunkCount(diskSize, chunkSize)} chunks, not {chunks.Length}.");
        DiskSize = diskSize;
        ChunkSize = chunkSize;
        Chunks = chunks;
    }

    public long DiskSize { get; }
    public int ChunkSize { get; }
    public IReadOnlyList<ChunkId> Chunks { get; }

    /// <summary>The most chunks one manifest holds: it is written as one array (just under 4 TiB of disk in 64 KiB chunks, 256 TiB in 4 MiB ones).</summary>
    public static readonly int MaxChunks = (Array.MaxLength - HeaderSize - 32 - BlobCipher.Overhead) / ChunkId.Size;

    /// <summary>The chunks of a disk; a disk too large for one manifest is refused before anything is read.</summary>
    public static int ChunkCount(long diskSize, int chunkSize)
    {
        var count = (diskSize + chunkSize - 1) / chunkSize;
        if (count > MaxChunks)
            throw new RepositoryException($"A disk of {diskSize} bytes in chunks of {chunkSize} bytes needs {count} chunks, more than one manifest holds ({MaxChunks}): " +
                $"back it up into a repository with chunks of at least {System.Numerics.BitOperations.RoundUpToPowerOf2((ulong)chunkSize * (ulong)((count + MaxChunks - 1) / MaxChunks))} bytes (repository init --chunk-size).");
        return (int)count;
    }

    /// <summary>Length of chunk <paramref name="index"/>: the chunk size, except for a short last chunk.</summary>
    public int ChunkLength(int index) => (int)Math.Min(ChunkSize, DiskSize - (long)index * ChunkSize);

    /// <summary>Throws <see cref="CorruptDataException"/> unless a chunk read for position <paramref name="index"/> is as long as that position (a restore would write a disk of the wrong shape).</summary>
    public void CheckChunkLength(int index, ChunkId id, int length)
    {
        if (length != ChunkLength(index)) throw new CorruptDataException($"Chunk {id} holds {length} bytes where the manifest needs {ChunkLength(index)}.");
    }

    public byte[] ToBytes()
    {
        var bytes = new byte[HeaderSize + (long)Chunks.Count * ChunkId.Size + 32];
        Magic.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), DiskSize);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(16), ChunkSize);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(20), Chunks.Count);
        for (var i = 0; i < Chunks.Count; i++) Chunks[i].Write(bytes.AsSpan(HeaderSize + i * ChunkId.Size));
        SHA256.HashData(bytes.AsSpan(0, bytes.Length - 32), bytes.AsSpan(bytes.Length - 32));
        return bytes;
    }

    public static Manifest Parse(ReadOnlySpan<byte> bytes, string what)
    {
        if (bytes.Length < HeaderSize + 32 || !bytes[..8].SequenceEqual(Magic))
            throw new CorruptDataException($"{what} is not a manifest (bad magic or truncated).");
        Span<byte> sum = stackalloc byte[32];
        SHA256.HashData(bytes[..^32], sum);
        if (!sum.SequenceEqual(bytes[^32..])) throw new CorruptDataException($"{what} is damaged (checksum mismatch).");
        var size = BinaryPrimitives.ReadInt64LittleEndian(bytes[8..]);
        var chunkSize = BinaryPrimitives.ReadInt32LittleEndian(bytes[16..]);
        var count = BinaryPrimitives.ReadInt32LittleEndian(bytes[20..]);
        // Checked in 64 bits before anything is computed from them: a file whose checksum was made
        // to match must not overflow the arithmetic nor make the parser allocate what it claims.
        var covered = (long)count * chunkSize;
        if (size < 0 || chunkSize <= 0 || count < 0 || bytes.Length != HeaderSize + (long)count * ChunkId.Size + 32
            || covered < size || (count > 0 && covered - chunkSize >= size) || (count == 0 && size != 0))
            throw new CorruptDataException($"{what} has inconsistent sizes.");
        var chunks = new ChunkId[count];
        for (var i = 0; i < count; i++) chunks[i] = ChunkId.Read(bytes.Slice(HeaderSize + i * ChunkId.Size, ChunkId.Size));
        return new Manifest(size, chunkSize, chunks);
    }
}
