using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace ProxyBackup.Repository;

/// <summary>
/// SHA-256 of up to 16 messages at once, one per 32-bit lane of the AVX-512 registers. A single
/// SHA-256 cannot be split (every block depends on the one before), but independent chunks can run
/// side by side: on this project's machines that hashes about twice as fast per core as SHA-NI on
/// one message at a time. Used only where the CPU has AVX-512 (F and BW); the digests are plain
/// SHA-256 (FIPS 180-4), checked against the platform's implementation by the tests.
/// </summary>
internal static unsafe class Sha256Lanes
{
    public const int Width = 16;
    private const int Block = 64;

    /// <summary>The CPU has AVX-512 and the lanes passed their known-answer test (<see cref="SelfTest"/>).</summary>
    public static bool IsSupported => HardwareSupports && SelfTestResult.Value is null;

    /// <summary>What the hashing uses, for the daemon's start-up log line.</summary>
    public static string Status => !HardwareSupports ? "platform SHA-256 (no AVX-512)"
        : SelfTestResult.Value is { } failure ? $"platform SHA-256: the 16-lane SHA-256 failed its self-test ({failure})"
        : "16-lane AVX-512 SHA-256 (self-test passed)";

    private static bool HardwareSupports => Avx512F.IsSupported && Avx512BW.IsSupported;

    private static readonly Lazy<string?> SelfTestResult = new(() =>
    {
        var failure = SelfTest();
        if (failure is not null) System.Diagnostics.Trace.TraceWarning($"Chunk hashing falls back to the platform's SHA-256: {failure}");
        return failure;
    });

    /// <summary>
    /// Known answers, hashed together in lanes of different lengths, before the lanes name any chunk
    /// (borg's selftest is the model): FIPS 180-4's examples and RFC 4231's HMAC test case 2.
    /// Returns what failed, or null.
    /// </summary>
    internal static string? SelfTest()
    {
        if (!HardwareSupports) return "no AVX-512";
        (byte[] Message, string Digest)[] vectors =
        [
            ("abc"u8.ToArray(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ([], "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"u8.ToArray(), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
            (Enumerable.Repeat((byte)'a', 1_000_000).ToArray(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
        ];
        var digests = HashAll([], [.. vectors.Select(v => v.Message)]);
        for (var i = 0; i < vectors.Length; i++)
            if (Convert.ToHexStringLower(digests[i]) != vectors[i].Digest) return $"FIPS 180-4 vector {i + 1} gave {Convert.ToHexStringLower(digests[i])}";
        // HMAC-SHA256 (RFC 2104) with the key's padded block as the shared prefix, as keyed chunk names use it.
        var key = new byte[Block];
        "Jefe"u8.CopyTo(key);
        var inner = HashAll([.. key.Select(b => (byte)(b ^ 0x36))], ["what do ya want for nothing?"u8.ToArray()])[0];
        var mac = HashAll([.. key.Select(b => (byte)(b ^ 0x5c))], [inner])[0];
        const string Expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        return Convert.ToHexStringLower(mac) == Expected ? null : $"RFC 4231 test case 2 gave {Convert.ToHexStringLower(mac)}";
    }

    private static byte[][] HashAll(byte[] prefix, byte[][] messages)
    {
        var handles = messages.Select(m => System.Runtime.InteropServices.GCHandle.Alloc(m, System.Runtime.InteropServices.GCHandleType.Pinned)).ToArray();
        try
        {
            var digests = new byte[32 * messages.Length];
            HashUnchecked(prefix, [.. handles.Select(h => h.AddrOfPinnedObject())], [.. messages.Select(m => m.Length)], digests);
            return [.. digests.Chunk(32)];
        }
        finally
        {
            foreach (var h in handles) h.Free();
        }
    }

    private static ReadOnlySpan<uint> RoundConstants =>
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    private static ReadOnlySpan<uint> InitialState => [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

    // Each 32-bit word of the input is big-endian.
    private static readonly Vector512<byte> ByteSwap = Vector512.Create(
        (byte)3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
        3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12);

    /// <summary>
    /// Writes SHA-256(<paramref name="prefix"/> ‖ message) of every message to <paramref name="digests"/>
    /// (32 bytes each, in order). <paramref name="prefix"/> is empty or one 64-byte block shared by all
    /// (HMAC's padded key). The messages' memory must stay fixed for the call (pinned or native).
    /// </summary>
    public static void Hash(ReadOnlySpan<byte> prefix, ReadOnlySpan<nint> messages, ReadOnlySpan<int> lengths, Span<byte> digests)
    {
        if (!IsSupported) throw new PlatformNotSupportedException($"Sha256Lanes is not in use here: {Status}.");
        HashUnchecked(prefix, messages, lengths, digests);
    }

    private static void HashUnchecked(ReadOnlySpan<byte> prefix, ReadOnlySpan<nint> messages, ReadOnlySpan<int> lengths, Span<byte> digests)
    {
        if (!HardwareSupports) throw new PlatformNotSupportedException("Sha256Lanes needs AVX-512 (F and BW).");
        if (messages.Length is 0 or > Width || lengths.Length != messages.Length || digests.Length < 32 * messages.Length || prefix.Length is not (0 or Block))
            throw new ArgumentException("1 to 16 messages with their lengths, 32 bytes of digest each, and an empty or 64-byte prefix.");
        var lanes = messages.Length;
        var first = prefix.Length / Block; // the block index where a lane's own data starts
        // The last one or two blocks of a message (its partial tail, the 0x80 marker, the bit length)
        // are assembled here; lanes without a message read zeros and keep their state.
        var tails = stackalloc byte[Width * 2 * Block];
        new Span<byte>(tails, Width * 2 * Block).Clear();
        var idle = stackalloc byte[Block];
        new Span<byte>(idle, Block).Clear();
        var fullBlocks = stackalloc long[Width];
        var totalBlocks = stackalloc uint[Width];
        uint steps = 0;
        for (var lane = 0; lane < lanes; lane++)
        {
            long length = lengths[lane];
            fullBlocks[lane] = length / Block;
            var remainder = (int)(length % Block);
            var tail = new Span<byte>(tails + 2 * Block * lane, 2 * Block);
            new ReadOnlySpan<byte>((byte*)messages[lane] + fullBlocks[lane] * Block, remainder).CopyTo(tail);
            tail[remainder] = 0x80;
            var tailBlocks = remainder + 9 <= Block ? 1 : 2;
            BinaryPrimitives.WriteUInt64BigEndian(tail[(tailBlocks * Block - 8)..], (ulong)(prefix.Length + length) * 8);
            totalBlocks[lane] = checked((uint)(first + fullBlocks[lane] + tailBlocks));
            steps = Math.Max(steps, totalBlocks[lane]);
        }

        var state = stackalloc Vector512<uint>[8];
        for (var i = 0; i < 8; i++) state[i] = Vector512.Create(InitialState[i]);
        var blocks = stackalloc byte*[Width];
        var schedule = stackalloc Vector512<uint>[16];
        var totals = Vector512.Load(totalBlocks);
        fixed (byte* shared = prefix)
        fixed (uint* k = RoundConstants)
        {
            for (uint step = 0; step < steps; step++)
            {
                for (var lane = 0; lane < Width; lane++)
                {
                    long own = step - first;
                    blocks[lane] = lane >= lanes || step >= totalBlocks[lane] ? idle
                        : own < 0 ? shared
                        : own < fullBlocks[lane] ? (byte*)messages[lane] + own * Block
                        : tails + 2 * Block * lane + (own - fullBlocks[lane]) * Block;
                }
                LoadTransposed(blocks, schedule);
                Compress(state, schedule, k, Vector512.LessThan(Vector512.Create(step), totals));
            }
        }

        var words = stackalloc uint[8 * Width];
        for (var i = 0; i < 8; i++) state[i].Store(words + Width * i);
        for (var lane = 0; lane < lanes; lane++)
            for (var i = 0; i < 8; i++)
                BinaryPrimitives.WriteUInt32BigEndian(digests.Slice(32 * lane + 4 * i, 4), words[Width * i + lane]);
    }

    /// <summary>Loads one 64-byte block per lane into the schedule: word t of every lane in schedule[t].</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void LoadTransposed(byte** blocks, Vector512<uint>* schedule)
    {
        // A 16×16 transpose of 32-bit words: interleave words, then pairs, then 128-bit quarters twice.
        var r0 = Row(blocks[0]); var r1 = Row(blocks[1]); var r2 = Row(blocks[2]); var r3 = Row(blocks[3]);
        var r4 = Row(blocks[4]); var r5 = Row(blocks[5]); var r6 = Row(blocks[6]); var r7 = Row(blocks[7]);
        var r8 = Row(blocks[8]); var r9 = Row(blocks[9]); var r10 = Row(blocks[10]); var r11 = Row(blocks[11]);
        var r12 = Row(blocks[12]); var r13 = Row(blocks[13]); var r14 = Row(blocks[14]); var r15 = Row(blocks[15]);
        var t0 = Avx512F.UnpackLow(r0, r1); var t1 = Avx512F.UnpackHigh(r0, r1);
        var t2 = Avx512F.UnpackLow(r2, r3); var t3 = Avx512F.UnpackHigh(r2, r3);
        var t4 = Avx512F.UnpackLow(r4, r5); var t5 = Avx512F.UnpackHigh(r4, r5);
        var t6 = Avx512F.UnpackLow(r6, r7); var t7 = Avx512F.UnpackHigh(r6, r7);
        var t8 = Avx512F.UnpackLow(r8, r9); var t9 = Avx512F.UnpackHigh(r8, r9);
        var t10 = Avx512F.UnpackLow(r10, r11); var t11 = Avx512F.UnpackHigh(r10, r11);
        var t12 = Avx512F.UnpackLow(r12, r13); var t13 = Avx512F.UnpackHigh(r12, r13);
        var t14 = Avx512F.UnpackLow(r14, r15); var t15 = Avx512F.UnpackHigh(r14, r15);
        // Within each 128-bit quarter q: u0 holds word 4q of rows 0-3, u1 word 4q+1, u2 4q+2, u3 4q+3;
        // u4-u7 the same for rows 4-7, u8-u11 rows 8-11, u12-u15 rows 12-15.
        Quarters(Pairs(t0, t2, low: true), Pairs(t4, t6, low: true), Pairs(t8, t10, low: true), Pairs(t12, t14, low: true), schedule, 0);
        Quarters(Pairs(t0, t2, low: false), Pairs(t4, t6, low: false), Pairs(t8, t10, low: false), Pairs(t12, t14, low: false), schedule, 1);
        Quarters(Pairs(t1, t3, low: true), Pairs(t5, t7, low: true), Pairs(t9, t11, low: true), Pairs(t13, t15, low: true), schedule, 2);
        Quarters(Pairs(t1, t3, low: false), Pairs(t5, t7, low: false), Pairs(t9, t11, low: false), Pairs(t13, t15, low: false), schedule, 3);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Row(byte* block) => Avx512BW.Shuffle(Vector512.Load(block), ByteSwap).AsUInt32();

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<uint> Pairs(Vector512<uint> x, Vector512<uint> y, bool low) => low
        ? Avx512F.UnpackLow(x.AsUInt64(), y.AsUInt64()).AsUInt32()
        : Avx512F.UnpackHigh(x.AsUInt64(), y.AsUInt64()).AsUInt32();

    /// <summary>From word j (of rows 0-3, 4-7, 8-11, 12-15 in each quarter) to schedule words j, j+4, j+8, j+12.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Quarters(Vector512<uint> rows0, Vector512<uint> rows4, Vector512<uint> rows8, Vector512<uint> rows12, Vector512<uint>* schedule, int j)
    {
        var even0 = Avx512F.Shuffle4x128(rows0, rows4, 0x88); var odd0 = Avx512F.Shuffle4x128(rows0, rows4, 0xDD);
        var even8 = Avx512F.Shuffle4x128(rows8, rows12, 0x88); var odd8 = Avx512F.Shuffle4x128(rows8, rows12, 0xDD);
        schedule[j] = Avx512F.Shuffle4x128(even0, even8, 0x88);
        schedule[j + 8] = Avx512F.Shuffle4x128(even0, even8, 0xDD);
        schedule[j + 4] = Avx512F.Shuffle4x128(odd0, odd8, 0x88);
        schedule[j + 12] = Avx512F.Shuffle4x128(odd0, odd8, 0xDD);
    }

    /// <summary>The 64 rounds over one block in every lane; only the lanes in <paramref name="active"/> keep the result.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Compress(Vector512<uint>* state, Vector512<uint>* w, uint* k, Vector512<uint> active)
    {
        var a = state[0]; var b = state[1]; var c = state[2]; var d = state[3];
        var e = state[4]; var f = state[5]; var g = state[6]; var h = state[7];
        for (var t = 0; t < 64; t++)
        {
            Vector512<uint> word;
            if (t < 16) word = w[t];
            else
            {
                // The message schedule lives in a 16-word ring.
                var w15 = w[(t - 15) & 15];
                var w2 = w[(t - 2) & 15];
                var s0 = Avx512F.TernaryLogic(Avx512F.RotateRight(w15, 7), Avx512F.RotateRight(w15, 18), Avx512F.ShiftRightLogical(w15, 3), 0x96);
                var s1 = Avx512F.TernaryLogic(Avx512F.RotateRight(w2, 17), Avx512F.RotateRight(w2, 19), Avx512F.ShiftRightLogical(w2, 10), 0x96);
                word = w[t & 15] + s0 + w[(t - 7) & 15] + s1;
                w[t & 15] = word;
            }
            // 0x96: x ^ y ^ z; 0xCA: e ? f : g (Ch); 0xE8: majority of a, b, c (Maj).
            var sum1 = Avx512F.TernaryLogic(Avx512F.RotateRight(e, 6), Avx512F.RotateRight(e, 11), Avx512F.RotateRight(e, 25), 0x96);
            var t1 = h + sum1 + Avx512F.TernaryLogic(e, f, g, 0xCA) + Vector512.Create(k[t]) + word;
            var sum0 = Avx512F.TernaryLogic(Avx512F.RotateRight(a, 2), Avx512F.RotateRight(a, 13), Avx512F.RotateRight(a, 22), 0x96);
            var t2 = sum0 + Avx512F.TernaryLogic(a, b, c, 0xE8);
            h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
        }
        state[0] = Vector512.ConditionalSelect(active, state[0] + a, state[0]);
        state[1] = Vector512.ConditionalSelect(active, state[1] + b, state[1]);
        state[2] = Vector512.ConditionalSelect(active, state[2] + c, state[2]);
        state[3] = Vector512.ConditionalSelect(active, state[3] + d, state[3]);
        state[4] = Vector512.ConditionalSelect(active, state[4] + e, state[4]);
        state[5] = Vector512.ConditionalSelect(active, state[5] + f, state[5]);
        state[6] = Vector512.ConditionalSelect(active, state[6] + g, state[6]);
        state[7] = Vector512.ConditionalSelect(active, state[7] + h, state[7]);
    }
}
