using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxyBackup.Repository;

/// <summary>
/// A disk to read or write: a block device or a regular file. Block devices are read with O_DIRECT
/// (a backup reads what is on the device and does not evict the proxy's page cache); restore
/// targets, devices and files alike, are written with O_DIRECT where the file system allows, so
/// that restored data goes to the disk instead of filling the page cache.
/// </summary>
internal sealed class BlockSource : IDisposable
{
    private const int DirectAlignment = 4096;
    private readonly SafeFileHandle? _direct;

    private BlockSource(string path, SafeFileHandle handle, SafeFileHandle? direct, long size, bool isBlockDevice, bool createdFile = false)
    {
        Path = path;
        CreatedFile = createdFile;
        Handle = handle;
        _direct = direct;
        Size = size;
        IsBlockDevice = isBlockDevice;
    }

    public string Path { get; }

    /// <summary>A restore target file that this open created (nothing was at the path before).</summary>
    public bool CreatedFile { get; }

    /// <summary>The handle reads use; for writes, the buffered handle that takes unaligned pieces.</summary>
    public SafeFileHandle Handle { get; }
    public long Size { get; }
    public bool IsBlockDevice { get; }

    public static BlockSource OpenRead(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The source {path} does not exist.", path);
        var buffered = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.SequentialScan);
        var blockSize = TryBlockDeviceSize(buffered);
        if (blockSize is null) return new BlockSource(path, buffered, null, RandomAccess.GetLength(buffered), false);
        var direct = Native.OpenDirect(path, write: false);
        if (direct is null) return new BlockSource(path, buffered, null, blockSize.Value, true);
        buffered.Dispose();
        return new BlockSource(path, direct, null, blockSize.Value, true);
    }

    /// <summary>
    /// Opens a restore target: a block device as it is, or a file created sparse at the disk's size.
    /// An existing file is emptied, or refused when <paramref name="refuseExistingFile"/>.
    /// </summary>
    public static BlockSource OpenWrite(string path, long diskSize, bool refuseExistingFile)
    {
        var exists = File.Exists(path);
        if (exists)
        {
            var existing = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            if (TryBlockDeviceSize(existing) is { } deviceSize)
            {
                if (deviceSize < diskSize)
                {
                    existing.Dispose();
                    throw new RepositoryException($"Target {path} holds {deviceSize} bytes, the disk needs {diskSize}.");
                }
                return new BlockSource(path, existing, Native.OpenDirect(path, write: true), deviceSize, true);
            }
            existing.Dispose();
            if (refuseExistingFile) throw ExistingFileRefused(path);
        }
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite);
        try
        {
            File.SetUnixFileMode(handle, OwnerOnly.File); // a restored disk is as private as its backup
            RandomAccess.SetLength(handle, diskSize);
        }
        catch
        {
            handle.Dispose();
            if (!exists) AtomicFile.TryDelete(path);
            throw;
        }
        return new BlockSource(path, handle, Native.OpenDirect(path, write: true), diskSize, false, createdFile: !exists);
    }

    public static RepositoryException ExistingFileRefused(string path) =>
        new($"{path} already exists: a restore writes a new file or a block device. Remove the file or choose another path.");

    private static long? TryBlockDeviceSize(SafeFileHandle handle)
    {
        try { return Native.BlockDeviceSize(handle); }
        catch (IOException) { return null; }
    }

    /// <summary>Reads until the buffer is full or the end of the disk.</summary>
    public int ReadFull(Span<byte> buffer, long offset)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = RandomAccess.Read(Handle, buffer[total..], offset + total);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    /// <summary>Writes at an offset: aligned pieces from aligned memory go direct, the rest (a short tail) buffered.</summary>
    public unsafe void Write(ReadOnlySpan<byte> data, long offset)
    {
        fixed (byte* p = data)
        {
            var aligned = _direct is not null && offset % DirectAlignment == 0 && data.Length % DirectAlignment == 0 && (nuint)p % DirectAlignment == 0;
            RandomAccess.Write(aligned ? _direct! : Handle, data, offset);
        }
    }

    /// <summary>
    /// Makes the restored data durable before the target is detached or used: fsync, and on a block
    /// device BLKFLSBUF so that nothing of it stays in the proxy's buffers.
    /// </summary>
    public void Flush()
    {
        RandomAccess.FlushToDisk(_direct ?? Handle);
        if (_direct is not null) RandomAccess.FlushToDisk(Handle);
        if (IsBlockDevice) Native.FlushBlockDeviceBuffers(Handle);
    }

    public void Dispose()
    {
        _direct?.Dispose();
        Handle.Dispose();
    }
}

/// <summary>Chunk buffers aligned to 4 KiB (O_DIRECT needs it), allocated once, outside the GC heap, zeroed.</summary>
internal sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private readonly byte* _pointer;
    private readonly int _length;

    public AlignedBuffer(int length)
    {
        _length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
        // The allocator hands back what an earlier buffer held: a restore writes its zero chunks
        // from a buffer that must read as zeros (found by a drill's read-back, docs/operations.md "Restore drills").
        NativeMemory.Clear(_pointer, (nuint)length);
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) => NativeMemory.AlignedFree(_pointer);
}
