using System.Runtime.InteropServices;

namespace ProxyBackup.FileRestore;

/// <summary>The libc calls a FUSE file system needs that .NET does not expose: /dev/fuse reads and writes, mount(2), umount2(2).</summary>
internal static partial class FuseNative
{
    private const int ORdWr = 0x2;
    private const int OCloexec = 0x80000;

    // <linux/mount.h>
    public const ulong MsRdOnly = 1, MsNoSuid = 2, MsNoDev = 4;
    public const int MntDetach = 2;

    // errno values the server answers with (negated in replies)
    public const int Enoent = 2, Eio = 5, Ebadf = 9, Enodata = 61, Erofs = 30, Enosys = 38, Einval = 22;

    // errno values a read of /dev/fuse returns
    public const int Enodev = 19, Eintr = 4, Eagain = 11;

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static unsafe partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static unsafe partial nint Write(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "mount", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Mount(string source, string target, string fileSystemType, ulong flags, string data);

    [LibraryImport("libc", EntryPoint = "umount2", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Umount2(string target, int flags);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);

    public const uint RegularFile = 0x8000, Directory = 0x4000, SymbolicLink = 0xA000;

    /// <summary>The file's type bits (S_IFMT of stx_mode; a link itself, not what it points to): statx's layout is the same on every architecture.</summary>
    public static unsafe uint FileType(string path)
    {
        const int AtFdCwd = -100, AtSymlinkNoFollow = 0x100;
        const uint StatxType = 1;
        var buffer = stackalloc byte[256];
        if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, buffer) != 0) throw new IOException($"{path}: {Marshal.GetLastPInvokeErrorMessage()}");
        return *(ushort*)(buffer + 28) & 0xF000u;
    }

    public static int OpenFuseDevice()
    {
        var fd = Open("/dev/fuse", ORdWr | OCloexec);
        return fd >= 0 ? fd : throw new IOException($"/dev/fuse cannot be opened ({Marshal.GetLastPInvokeErrorMessage()}): the kernel has no FUSE, or this is not root.");
    }

    /// <summary>Mounts the FUSE connection on <paramref name="fd"/> read-only at <paramref name="target"/>, for root only.</summary>
    public static void MountFuse(int fd, string target, string name)
    {
        var data = $"fd={fd},rootmode=40000,user_id=0,group_id=0";
        if (Mount(name, target, "fuse." + name, MsRdOnly | MsNoSuid | MsNoDev, data) != 0)
            throw new IOException($"Mounting the restore point's disks at {target} failed: {Marshal.GetLastPInvokeErrorMessage()}.");
    }

    /// <summary>Unmounts lazily: a mount still in use goes when its last user does.</summary>
    public static bool Unmount(string target) => Umount2(target, MntDetach) == 0;
}
