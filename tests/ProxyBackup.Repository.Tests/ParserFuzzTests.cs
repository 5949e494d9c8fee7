using System.Buffers.Binary;
using System.Security.Cryptography;

namespace ProxyBackup.Repository.Tests;

/// <summary>
/// Seeded fuzzing of the repository's parsers (docs/repository-format.md): manifests, chunk files
/// (plain and encrypted) and indexes, truncated, bit-flipped, or well-formed with absurd counts and
/// sizes. Each ends with the data or a <see cref="CorruptDataException"/> naming what is damaged:
/// never another exception, never an allocation of a size the damaged file claims.
/// </summary>
public class ParserFuzzTests
{
    private const int Seed = 4242;
    private const int ChunkSize = 64 << 10;

    private static byte[] Mutate(byte[] good, Random rnd)
    {
        switch (rnd.Next(3))
        {
            case 0: return good[..rnd.Next(good.Length)];
            case 1:
                var flipped = (byte[])good.Clone();
                for (var i = 0; i < 1 + rnd.Next(4); i++) flipped[rnd.Next(flipped.Length)] ^= (byte)(1 << rnd.Next(8));
                return flipped;
            default:
                var longer = new byte[good.Length + rnd.Next(1, 64)];
                good.CopyTo(longer, 0);
                rnd.NextBytes(longer.AsSpan(good.Length));
                return longer;
        }
    }

    [Fact]
    public void Damaged_manifests_are_refused_as_damaged()
    {
        var rnd = new Random(Seed);
        var chunks = Enumerable.Range(0, 10).Select(i => ChunkId.Parse(Convert.ToHexStringLower(SHA256.HashData(BitConverter.GetBytes(i))))).ToArray();
        var good = new Manifest(10L * ChunkSize - 100, ChunkSize, chunks).ToBytes();
        Assert.Equal(chunks, Manifest.Parse(good, "m").Chunks);
        for (var i = 0; i < 2000; i++)
            Assert.Throws<CorruptDataException>(() => Manifest.Parse(Mutate(good, rnd), "m"));
    }

    [Theory]
    [InlineData(long.MaxValue, 1, int.MaxValue)]
    [InlineData(1L << 50, 4096, 0)]
    [InlineData(-1L, 4096, 0)]
    [InlineData(4096L, 0, 1)]
    [InlineData(4096L, -4096, 1)]
    [InlineData(1L << 40, 1 << 20, 1 << 20)]
    public void A_manifest_with_a_valid_checksum_and_absurd_sizes_is_refused_without_allocating_them(long size, int chunkSize, int count)
    {
        // Whoever can write the file can also fix its checksum: the sizes are checked on their own.
        var bytes = new byte[24 + 32];
        "PBMANIF1"u8.CopyTo(bytes);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(8), size);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(16), chunkSize);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(20), count);
        SHA256.HashData(bytes.AsSpan(0, 24), bytes.AsSpan(24));
        var before = GC.GetAllocatedBytesForCurrentThread();
        Assert.Throws<CorruptDataException>(() => Manifest.Parse(bytes, "m"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "the parser allocated what the damaged file claims");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Damaged_chunk_files_are_refused_as_damaged(bool encrypted)
    {
        var rnd = new Random(Seed + (encrypted ? 1 : 0));
        var keys = encrypted ? MasterKeys.Generate() : null;
        using var codec = new ChunkCodec(ChunkSize, 3, keys);
        var hasher = new ChunkHasher(keys?.NameKey, concurrentCallers: 1);
        var destination = new byte[ChunkSize];
        foreach (var compressible in new[] { true, false })
        {
            var data = new byte[ChunkSize];
            if (compressible) data.AsSpan(0, 1000).Fill(7); else rnd.NextBytes(data);
            var id = hasher.Name(data);
            var good = codec.Encode(id, data).ToArray();
            Assert.Equal(ChunkSize, codec.Decode(id, good, destination));
            for (var i = 0; i < 500; i++)
            {
                var bad = Mutate(good, rnd);
                if (bad.AsSpan().SequenceEqual(good)) continue;
                Assert.Throws<CorruptDataException>(() => codec.Decode(id, bad, destination));
            }
        }
    }

    [Fact]
    public void Damaged_indexes_are_refused_as_damaged()
    {
        using var dir = new ProxyBackup.TestSupport.TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = ChunkSize });
        using (var writer = repo.StartRestorePoint("vm-1"))
        {
            writer.AddMetadata("vm.xml", "<VM/>"u8.ToArray());
            writer.Commit();
        }
        var point = Assert.Single(repo.ListRestorePoints());
        var path = Path.Combine(dir.Combine("repo"), "points", point.Source, point.Id, "index");
        var good = File.ReadAllBytes(path);
        var rnd = new Random(Seed + 2);
        for (var i = 0; i < 300; i++)
        {
            var bad = Mutate(good, rnd);
            File.WriteAllBytes(path, bad);
            try { repo.LoadIndex(point.Source, point.Id); }
            catch (RepositoryException) { }
        }
    }
}
