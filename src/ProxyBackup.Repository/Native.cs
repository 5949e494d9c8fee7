using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace ProxyBackup.Repository;

/// <summary>The few libc calls .NET does not expose: O_DIRECT opens, device sizes, syncfs, directory fsync.</summary>
internal static partial class Native
{
    // open(2) flags from <asm-generic/fcntl.h>, the same on x86_64 and aarch64 ...
    private const int ORdOnly = 0x0;
    private const int OWrOnly = 0x1;
    private const int ORdWr = 0x2;
    private const int OCreat = 0x40;
    private const int OExcl = 0x80;
    private const int OCloexec = 0x80000;
    // ... except these two, which aarch64's <asm/fcntl.h> swaps: with x86_64's values an aarch64
    // build would open directories with O_DIRECT and make their fsync a silent no-op.
    private static readonly int ODirect = ArchitectureFlag(x64: 0x4000, arm64: 0x10000);
    private static readonly int ODirectory = ArchitectureFlag(x64: 0x10000, arm64: 0x4000);
    // <linux/fs.h>: BLKGETSIZE64 = _IOR(0x12, 114, size_t), BLKFLSBUF = _IO(0x12, 97); the generic
    // ioctl encoding, the same on x86_64 and aarch64.
    private const ulong BlkGetSize64 = 0x80081272;
    private const ulong BlkFlsBuf = 0x1261;
    private const int FGetFl = 3;
    private const int FSetFl = 4;
    public const int Einval = 22;
    public const int Enospc = 28;
    public const int DirectAlignment = 4096;

    /// <summary>The flag for the architecture this process runs on; any other is refused with a clear message.</summary>
    private static int ArchitectureFlag(int x64, int arm64) => RuntimeInformation.ProcessArchitecture switch
    {
        Architecture.X64 => x64,
        Architecture.Arm64 => arm64,
        var other => throw new PlatformNotSupportedException($"ProxyBackup runs on x86_64 and aarch64 Linux; this machine is {other}."),
    };

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int Fadvise(int fd, long offset, long length, int advice);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int Fdatasync(int fd);

    [LibraryImport("libc", EntryPoint = "syncfs", SetLastError = true)]
    private static partial int Syncfs(int fd);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, ulong request, out ulong value);

    [LibraryImport("libc", EntryPoint = "sync_file_range", SetLastError = true)]
    private static partial int SyncFileRange(int fd, long offset, long nbytes, uint flags);

    [LibraryImport("libc", EntryPoint = "ioctl", SetLastError = true)]
    private static partial int Ioctl(int fd, ulong request, nint zero);

    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(int fd, int mode, long offset, long length);

    /// <summary>Opens with O_DIRECT, or returns null when the file system refuses it (tmpfs, some FUSE).</summary>
    public static SafeFileHandle? OpenDirect(string path, bool write)
    {
        var fd = Open(path, (write ? ORdWr : ORdOnly) | ODirect | OCloexec);
        return fd < 0 ? null : new SafeFileHandle(fd, ownsHandle: true);
    }

    /// <summary>
    /// Creates a new file (it must not exist) for writing with O_DIRECT, or returns null when the file
    /// system refuses O_DIRECT. Other failures (no space, no directory) throw with their errno.
    /// </summary>
    public static SafeFileHandle? CreateDirect(string path)
    {
        var fd = Open(path, OWrOnly | OCreat | OExcl | ODirect | OCloexec, (int)OwnerOnly.File);
        if (fd >= 0) return new SafeFileHandle(fd, ownsHandle: true);
        var errno = Marshal.GetLastPInvokeError();
        if (errno == Einval) return null;
        throw new IOException($"Cannot create {path}: {Marshal.GetPInvokeErrorMessage(errno)}.", errno);
    }

    /// <summary>Turns O_DIRECT off on an open file, for a piece that is not block-aligned.</summary>
    public static void EndDirect(SafeFileHandle handle)
    {
        var fd = (int)handle.DangerousGetHandle();
        var flags = Fcntl(fd, FGetFl, 0);
        if (flags < 0 || Fcntl(fd, FSetFl, flags & ~ODirect) != 0)
            throw new IOException($"Cannot turn off O_DIRECT (errno {Marshal.GetLastPInvokeError()}).");
    }

    /// <summary>
    /// Starts writing a file's dirty pages to disk without waiting (SYNC_FILE_RANGE_WRITE), so that
    /// the disk works while the CPU compresses the next chunks and the final syncfs finds little left.
    /// </summary>
    public static void StartWriteback(SafeFileHandle handle) => _ = SyncFileRange((int)handle.DangerousGetHandle(), 0, 0, 2);

    /// <summary>Reserves blocks for a range of a file: 0, or the errno (ENOSPC, EOPNOTSUPP where the file system cannot).</summary>
    public static int Preallocate(SafeFileHandle handle, long offset, long length) =>
        Fallocate((int)handle.DangerousGetHandle(), 0, offset, length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>
    /// Asks the kernel to start reading a whole file into the page cache (POSIX_FADV_WILLNEED) and
    /// returns at once; a file that cannot be opened is left for the real read to report.
    /// </summary>
    public static void StartReading(string path)
    {
        var fd = Open(path, ORdOnly | OCloexec);
        if (fd < 0) return;
        _ = Fadvise(fd, 0, 0, 3);
        Close(fd);
    }

    /// <summary>Size of a block device in bytes (BLKGETSIZE64).</summary>
    public static long BlockDeviceSize(SafeFileHandle handle)
    {
        if (Ioctl((int)handle.DangerousGetHandle(), BlkGetSize64, out var size) != 0)
            throw new IOException($"Cannot read the block device's size (errno {Marshal.GetLastPInvokeError()}).");
        return checked((long)size);
    }

    /// <summary>Drops the kernel's buffers of a block device (BLKFLSBUF) after writing, before it is detached.</summary>
    public static void FlushBlockDeviceBuffers(SafeFileHandle handle) => _ = Ioctl((int)handle.DangerousGetHandle(), BlkFlsBuf, 0);

    /// <summary>Makes every write to the file system that holds <paramref name="path"/> durable.</summary>
    public static void SyncFileSystem(string path)
    {
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0) throw new IOException($"Cannot open {path} (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Syncfs(fd) != 0) throw new IOException($"syncfs failed on {path} (errno {Marshal.GetLastPInvokeError()}).");
        }
        finally
        {
            Close(fd);
        }
    }

    /// <summary>fdatasync: the file's data and size are on disk on return.</summary>
    public static void SyncData(SafeFileHandle handle)
    {
        if (Fdatasync((int)handle.DangerousGetHandle()) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new IOException($"fdatasync failed: {Marshal.GetPInvokeErrorMessage(errno)}.", errno);
        }
    }

    /// <summary>
    /// Makes a directory's entries durable (a rename, a delete). A failure is an error: the write it
    /// was to make durable may be lost. File systems that cannot sync a directory (EINVAL) already
    /// make entries durable with the data, and count as done.
    /// </summary>
    public static void FsyncDirectory(string path)
    {
        var fd = Open(path, ORdOnly | ODirectory | OCloexec);
        if (fd < 0) throw new IOException($"Cannot open directory {path} to make its entries durable (errno {Marshal.GetLastPInvokeError()}).");
        try
        {
            if (Fsync(fd) != 0 && Marshal.GetLastPInvokeError() is var errno && errno != Einval)
                throw new IOException($"Making the entries of {path} durable failed (errno {errno}): a rename or delete in it may be lost.");
        }
        finally { Close(fd); }
    }

    public static bool IsNoSpace(IOException e) => (e.HResult & 0xFFFF) == Enospc || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);

}
