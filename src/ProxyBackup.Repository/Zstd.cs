using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxyBackup.Repository;

/// <summary>zstd through the system's libzstd.so.1 (Debian libzstd1): the field's standard, no managed port is available.</summary>
internal static partial class Zstd
{
    private const string Lib = "libzstd.so.1";

    [LibraryImport(Lib, EntryPoint = "ZSTD_compressBound")]
    private static partial nuint CompressBound(nuint srcSize);

    [LibraryImport(Lib, EntryPoint = "ZSTD_createCCtx")]
    private static partial CompressionContext CreateCCtx();

    [LibraryImport(Lib, EntryPoint = "ZSTD_freeCCtx")]
    private static partial nuint FreeCCtx(nint cctx);

    [LibraryImport(Lib, EntryPoint = "ZSTD_compressCCtx")]
    private static unsafe partial nuint CompressCCtx(CompressionContext cctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize, int level);

    [LibraryImport(Lib, EntryPoint = "ZSTD_createDCtx")]
    private static partial DecompressionContext CreateDCtx();

    [LibraryImport(Lib, EntryPoint = "ZSTD_freeDCtx")]
    private static partial nuint FreeDCtx(nint dctx);

    [LibraryImport(Lib, EntryPoint = "ZSTD_decompressDCtx")]
    private static unsafe partial nuint DecompressDCtx(DecompressionContext dctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

    [LibraryImport(Lib, EntryPoint = "ZSTD_isError")]
    private static partial uint IsError(nuint code);

    [LibraryImport(Lib, EntryPoint = "ZSTD_getErrorName")]
    private static partial nint GetErrorName(nuint code);

    [LibraryImport(Lib, EntryPoint = "ZSTD_versionNumber")]
    private static partial uint VersionNumber();

    public static int Bound(int size) => checked((int)CompressBound((nuint)size));

    public static string Version
    {
        get
        {
            var v = VersionNumber();
            return $"{v / 10000}.{v / 100 % 100}.{v % 100}";
        }
    }

    private static string Error(nuint code) => Marshal.PtrToStringAnsi(GetErrorName(code)) ?? "unknown zstd error";

    /// <summary>A ZSTD_CCtx, freed exactly once, even when its owner is never disposed.</summary>
    private sealed class CompressionContext() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
    {
        protected override bool ReleaseHandle()
        {
            FreeCCtx(handle);
            return true;
        }
    }

    /// <summary>A ZSTD_DCtx, freed exactly once, even when its owner is never disposed.</summary>
    private sealed class DecompressionContext() : SafeHandleZeroOrMinusOneIsInvalid(ownsHandle: true)
    {
        protected override bool ReleaseHandle()
        {
            FreeDCtx(handle);
            return true;
        }
    }

    /// <summary>A compression context: one per worker thread (contexts are not thread-safe).</summary>
    public sealed class Compressor : IDisposable
    {
        private readonly CompressionContext _ctx = CreateCCtx().OrThrowIfInvalid();

        public unsafe int Compress(ReadOnlySpan<byte> src, Span<byte> dst, int level)
        {
            fixed (byte* s = src)
            fixed (byte* d = dst)
            {
                var n = CompressCCtx(_ctx, d, (nuint)dst.Length, s, (nuint)src.Length, level);
                if (IsError(n) != 0) throw new InvalidDataException($"zstd compression failed: {Error(n)}");
                return (int)n;
            }
        }

        public void Dispose() => _ctx.Dispose();
    }

    public sealed class Decompressor : IDisposable
    {
        private readonly DecompressionContext _ctx = CreateDCtx().OrThrowIfInvalid();

        public unsafe int Decompress(ReadOnlySpan<byte> src, Span<byte> dst)
        {
            fixed (byte* s = src)
            fixed (byte* d = dst)
            {
                var n = DecompressDCtx(_ctx, d, (nuint)dst.Length, s, (nuint)src.Length);
                if (IsError(n) != 0) throw new InvalidDataException($"zstd frame is damaged: {Error(n)}");
                return (int)n;
            }
        }

        public void Dispose() => _ctx.Dispose();
    }

    private static T OrThrowIfInvalid<T>(this T context) where T : SafeHandle =>
        context.IsInvalid ? throw new OutOfMemoryException("zstd could not allocate a context.") : context;
}
