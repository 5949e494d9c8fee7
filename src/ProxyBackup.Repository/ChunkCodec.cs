using System.Security.Cryptography;
using System.Text;

namespace ProxyBackup.Repository;

/// <summary>
/// Turns a chunk's bytes into its name and stored form, and back, checking integrity on the way in.
/// One codec per worker thread: it owns a zstd context and scratch buffers.
/// </summary>
internal sealed class ChunkCodec : IDisposable
{
    private const byte Raw = 0x00;
    private const byte Compressed = 0x01;

    private readonly MasterKeys? _keys;
    private readonly ChunkHasher _hasher;
    private readonly int _level;
    private readonly int _chunkSize;
    private readonly int _encodedCapacity;
    // Allocated on first use: a backup's codec only encodes, a restore's only decodes. Aligned so
    // that a chunk file goes to the disk with O_DIRECT straight from them.
    private AlignedBuffer? _encoded;
    private AlignedBuffer? _sealed;
    private byte[]? _plain;
    private readonly Zstd.Compressor _compressor = new();
    private readonly Zstd.Decompressor _decompressor = new();

    /// <param name="hasher">Shared by the workers of one operation, so that it can batch their hashes; a private one when null.</param>
    public ChunkCodec(int chunkSize, int level, MasterKeys? keys, ChunkHasher? hasher = null)
    {
        _keys = keys;
        _hasher = hasher ?? new ChunkHasher(keys?.NameKey, concurrentCallers: 1);
        _level = level;
        _chunkSize = chunkSize;
        _encodedCapacity = EncodedCapacity(chunkSize);
    }

    private static int EncodedCapacity(int chunkSize) => 1 + Math.Max(Zstd.Bound(chunkSize), chunkSize);

    /// <summary>The buffers an encoding codec holds (the encoded chunk, and its sealed copy when encrypting).</summary>
    public static long EncoderBytes(int chunkSize, bool encrypted) =>
        encrypted ? 2L * EncodedCapacity(chunkSize) + BlobCipher.Overhead : EncodedCapacity(chunkSize);

    /// <summary>The bytes of the chunk file for <paramref name="data"/>; valid until the next call.</summary>
    public ReadOnlyMemory<byte> Encode(ChunkId id, ReadOnlySpan<byte> data)
    {
        _encoded ??= new AlignedBuffer(_encodedCapacity);
        var encoded = _encoded.GetSpan();
        var n = _compressor.Compress(data, encoded[1..], _level);
        int length;
        if (n < data.Length)
        {
            encoded[0] = Compressed;
            length = 1 + n;
        }
        else
        {
            encoded[0] = Raw;
            data.CopyTo(encoded[1..]);
            length = 1 + data.Length;
        }
        if (_keys is null) return _encoded.Memory[..length];
        _sealed ??= new AlignedBuffer(_encodedCapacity + BlobCipher.Overhead);
        BlobCipher.Seal(_keys.DataKey, encoded[..length], Associated(id), _sealed.GetSpan()[..(length + BlobCipher.Overhead)]);
        return _sealed.Memory[..(length + BlobCipher.Overhead)];
    }

    /// <summary>Decodes a chunk file into <paramref name="destination"/> and checks that it hashes to its name.</summary>
    public int Decode(ChunkId id, ReadOnlySpan<byte> file, Span<byte> destination)
    {
        var data = Open(id, file, destination);
        if (!data.Overlaps(destination)) data.CopyTo(destination);
        return data.Length;
    }

    /// <summary>Whether <see cref="Unpack"/> needs its scratch buffer for this chunk file (it is compressed, or may be).</summary>
    public bool Decodes(ReadOnlySpan<byte> file) => _keys is not null || file.IsEmpty || file[0] != Raw;

    /// <summary>
    /// The verified bytes of a chunk: a slice of <paramref name="file"/> when it is stored raw and
    /// unencrypted (no copy), else decoded into <paramref name="scratch"/>.
    /// </summary>
    public ReadOnlySpan<byte> Open(ChunkId id, ReadOnlySpan<byte> file, Span<byte> scratch)
    {
        var data = Unpack(id, file, scratch);
        CheckName(id, data);
        return data;
    }

    /// <summary>Throws <see cref="CorruptDataException"/> unless <paramref name="data"/> hashes to <paramref name="id"/>.</summary>
    public void CheckName(ChunkId id, ReadOnlySpan<byte> data)
    {
        if (_hasher.Name(data) != id) throw new CorruptDataException($"Chunk {id} does not hash to its name (damaged).");
    }

    /// <summary>
    /// <see cref="Open"/> without the name check, for a caller that frees the chunk file's buffer
    /// before it waits for the hash; it must call <see cref="CheckName"/> before using the bytes.
    /// </summary>
    public ReadOnlySpan<byte> Unpack(ChunkId id, ReadOnlySpan<byte> file, Span<byte> scratch)
    {
        ReadOnlySpan<byte> encoded = file;
        if (_keys is not null)
        {
            try
            {
                _plain ??= new byte[_encodedCapacity];
                var n = BlobCipher.Open(_keys.DataKey, file, Associated(id), _plain);
                encoded = _plain.AsSpan(0, n);
            }
            catch (CryptographicException)
            {
                throw new CorruptDataException($"Chunk {id} does not decrypt (damaged or altered).");
            }
        }
        if (encoded.Length == 0) throw new CorruptDataException($"Chunk {id} is empty.");
        ReadOnlySpan<byte> data;
        switch (encoded[0])
        {
            case Raw:
                if (encoded.Length - 1 > _chunkSize) throw new CorruptDataException($"Chunk {id} is larger than a chunk.");
                data = encoded[1..];
                break;
            case Compressed:
                try { data = scratch[.._decompressor.Decompress(encoded[1..], scratch)]; }
                catch (InvalidDataException e) { throw new CorruptDataException($"Chunk {id}: {e.Message}"); }
                break;
            default:
                throw new CorruptDataException($"Chunk {id} has an unknown encoding {encoded[0]}.");
        }
        return data;
    }

    private static byte[] Associated(ChunkId id) => Encoding.ASCII.GetBytes("chunk:" + id);

    public void Dispose()
    {
        _compressor.Dispose();
        _decompressor.Dispose();
        ((IDisposable?)_encoded)?.Dispose();
        ((IDisposable?)_sealed)?.Dispose();
    }
}
