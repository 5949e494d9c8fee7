using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace ProxyBackup.Repository.Tests;

/// <summary>
/// Chunk names computed 16 at a time in AVX-512 lanes must be exactly the platform's SHA-256 and
/// HMAC-SHA256: a wrong name would break dedup against every older backup and fail every restore.
/// </summary>
public unsafe class ChunkHashingTests
{
    // Lengths around the padding boundaries (55/56 bytes need one or two final blocks), whole
    // blocks, empty messages, and chunk-sized ones.
    private static readonly int[] Edges = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4096, 65536 + 13];

    [Avx512Fact]
    public void The_lanes_pass_their_known_answer_self_test_before_they_are_used()
    {
        Assert.Null(Sha256Lanes.SelfTest());
        Assert.True(Sha256Lanes.IsSupported);
        Assert.StartsWith("16-lane", BackupRepository.HashingStatus, StringComparison.Ordinal);
    }

    [Fact]
    public void Verify_hashes_with_the_platform_never_in_lanes()
    {
        Assert.False(new ChunkHasher(null, 64, platformOnly: true).IsBatching);
        Assert.Equal(Sha256Lanes.IsSupported, new ChunkHasher(null, 64).IsBatching);
    }

    [Fact]
    public void Without_lanes_hashing_in_lanes_is_refused()
    {
        if (Sha256Lanes.IsSupported) Sha256Lanes.Hash([], [0], [0], new byte[32]);
        else Assert.Throws<PlatformNotSupportedException>(() => Sha256Lanes.Hash([], [0], [0], new byte[32]));
    }

    [Avx512Fact]
    public void Sixteen_lanes_give_the_platforms_sha256_for_every_length_and_lane_count()
    {
        var random = new Random(7);
        for (var trial = 0; trial < 300; trial++)
        {
            var lanes = 1 + trial % Sha256Lanes.Width;
            var messages = Enumerable.Range(0, lanes)
                .Select(_ => RandomBytes(random, random.Next(3) == 0 ? Edges[random.Next(Edges.Length)] : random.Next(0, 20_000)))
                .ToArray();
            Assert.Equal(messages.Select(m => SHA256.HashData(m)), HashInLanes(messages));
        }
    }

    [Avx512Fact]
    public void Lanes_of_very_different_lengths_finish_independently()
    {
        var random = new Random(8);
        // One 4 MiB chunk beside 15 short ones: the short lanes idle for thousands of blocks and must keep their result.
        var messages = new[] { RandomBytes(random, 4 << 20) }.Concat(Edges.Take(15).Select(n => RandomBytes(random, n))).ToArray();

        Assert.Equal(messages.Select(m => SHA256.HashData(m)), HashInLanes(messages));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Many_threads_hashing_at_once_are_batched_and_each_gets_its_own_name(bool keyed)
    {
        // Plain names are SHA-256; keyed names (encrypted repositories) HMAC-SHA256.
        var random = new Random(keyed ? 10 : 9);
        var key = keyed ? RandomBytes(random, 32) : null;
        var chunks = Enumerable.Range(0, 200).Select(i => RandomBytes(random, i % 7 == 0 ? 100 + i : 70_000 + i)).ToArray();
        var hasher = new ChunkHasher(key, concurrentCallers: 32);
        Assert.Equal(Sha256Lanes.IsSupported, hasher.IsBatching);

        var digests = HashConcurrently(hasher, chunks, threads: 32);

        Assert.Equal(chunks.Select(c => key is null ? SHA256.HashData(c) : HMACSHA256.HashData(key, c)), digests);
        if (Sha256Lanes.IsSupported) Assert.True(hasher.LaneBatches > 0);
    }

    [Fact]
    public void A_batch_that_does_not_fill_still_names_every_chunk()
    {
        // Three callers where the hasher expects 32: each batch waits its fill time, then the three
        // hash on their own threads.
        var random = new Random(11);
        var chunks = Enumerable.Range(0, 9).Select(i => RandomBytes(random, 3000 * (i + 1))).ToArray();

        var hasher = new ChunkHasher(null, concurrentCallers: 32);

        var digests = HashConcurrently(hasher, chunks, threads: 3);

        Assert.Equal(chunks.Select(c => SHA256.HashData(c)), digests);
        if (Sha256Lanes.IsSupported) Assert.True(hasher.FillTimeouts > 0);
    }

    [Fact]
    public void When_the_other_callers_have_left_a_batch_closes_without_waiting_its_fill_time()
    {
        // The end of a run: 32 workers were expected, 29 are done, the last 3 hash their chunks.
        var random = new Random(12);
        var chunks = Enumerable.Range(0, 3).Select(i => RandomBytes(random, 70_000 + i)).ToArray();
        // A fill time no loaded machine reaches: only the callers' leaving can close the batch.
        var hasher = new ChunkHasher(null, concurrentCallers: 32, PipelineTuning.Default with { BatchFillTime = TimeSpan.FromSeconds(10) });
        for (var i = 0; i < 29; i++) hasher.Leave();

        var digests = HashConcurrently(hasher, chunks, threads: 3);

        Assert.Equal(chunks.Select(c => SHA256.HashData(c)), digests);
        Assert.Equal(0, hasher.FillTimeouts);
    }

    private static byte[][] HashConcurrently(ChunkHasher hasher, byte[][] chunks, int threads)
    {
        var digests = new byte[chunks.Length][];
        var next = -1;
        var workers = Enumerable.Range(0, threads).Select(_ => new Thread(() =>
        {
            // Like the repository's workers: take chunks while there are any, then leave.
            for (var i = Interlocked.Increment(ref next); i < chunks.Length; i = Interlocked.Increment(ref next))
            {
                digests[i] = new byte[32];
                hasher.Hash(chunks[i], digests[i]);
            }
            hasher.Leave();
        })).ToList();
        workers.ForEach(t => t.Start());
        workers.ForEach(t => t.Join());
        return digests;
    }

    private static byte[][] HashInLanes(byte[][] messages)
    {
        var handles = messages.Select(m => GCHandle.Alloc(m, GCHandleType.Pinned)).ToArray();
        try
        {
            var output = new byte[32 * messages.Length];
            Sha256Lanes.Hash([], handles.Select(h => h.AddrOfPinnedObject()).ToArray(), messages.Select(m => m.Length).ToArray(), output);
            return output.Chunk(32).ToArray();
        }
        finally
        {
            foreach (var h in handles) h.Free();
        }
    }

    private static byte[] RandomBytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}

/// <summary>A test of the AVX-512 lanes; skipped, with the reason, on a CPU without AVX-512.</summary>
public sealed class Avx512FactAttribute : FactAttribute
{
    public Avx512FactAttribute()
    {
        if (!(System.Runtime.Intrinsics.X86.Avx512F.IsSupported && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)) Skip = "needs a CPU with AVX-512 (F and BW)";
    }
}
