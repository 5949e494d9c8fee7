using System.Buffers;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxyBackup.Repository;

/// <summary>
/// A disk to read or write: a block device (opened with O_DIRECT when reading, so a backup does not
/// evict the proxy's page cache and reads what is on the device) or a regular file.
/// </summary>
internal sealed class BlockSource : IDisposable
{
    private BlockSource(SafeFileHandle handle, long size, bool isBlockDevice, bool direct)
    {
        Handle = handle;
        Size = size;
        IsBlockDevice = isBlockDevice;
        Direct = direct;
    }

    public SafeFileHandle Handle { get; }
    public long Size { get; }
    public bool IsBlockDevice { get; }
    public bool Direct { get; }

    public static BlockSource OpenRead(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"The source {path} does not exist.", path);
        var buffered = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, FileOptions.SequentialScan);
        var blockSize = TryBlockDeviceSize(buffered);
        if (blockSize is null) return new BlockSource(buffered, RandomAccess.GetLength(buffered), false, false);
        var direct = Native.OpenDirect(path, write: false);
        if (direct is null) return new BlockSource(buffered, blockSize.Value, true, false);
        buffered.Dispose();
        return new BlockSource(direct, blockSize.Value, true, true);
    }

    /// <summary>Opens a restore target: a block device as it is, or a file created (or emptied) sparse at the disk's size.</summary>
    public static BlockSource OpenWrite(string path, long diskSize)
    {
        if (File.Exists(path))
        {
            var existing = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            if (TryBlockDeviceSize(existing) is { } deviceSize)
            {
                if (deviceSize < diskSize)
                {
                    existing.Dispose();
                    throw new RepositoryException($"Target {path} holds {deviceSize} bytes, the disk needs {diskSize}.");
                }
                return new BlockSource(existing, deviceSize, true, false);
            }
            existing.Dispose();
        }
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var handle = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.Read);
        RandomAccess.SetLength(handle, diskSize);
        return new BlockSource(handle, diskSize, false, false);
    }

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

    /// <summary>
    /// A restored block device is flushed and its buffers dropped, because it is detached next and
    /// nothing may stay behind in the proxy's cache. A restored file is left to the page cache, as
    /// cp does: it stays on this machine.
    /// </summary>
    public void FlushIfDevice()
    {
        if (!IsBlockDevice) return;
        RandomAccess.FlushToDisk(Handle);
        Native.FlushBlockDeviceBuffers(Handle);
    }

    public void Dispose() => Handle.Dispose();
}

/// <summary>Chunk buffers aligned to 4 KiB (O_DIRECT needs it), allocated once, outside the GC heap.</summary>
internal sealed unsafe class AlignedBuffer : MemoryManager<byte>
{
    private readonly byte* _pointer;
    private readonly int _length;

    public AlignedBuffer(int length)
    {
        _length = length;
        _pointer = (byte*)NativeMemory.AlignedAlloc((nuint)length, 4096);
    }

    public override Span<byte> GetSpan() => new(_pointer, _length);

    public override MemoryHandle Pin(int elementIndex = 0) => new(_pointer + elementIndex);

    public override void Unpin() { }

    protected override void Dispose(bool disposing) => NativeMemory.AlignedFree(_pointer);
}
