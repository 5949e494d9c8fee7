using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Runtime.InteropServices;
using System.Text;

namespace ProxyBackup.FileRestore;

/// <summary>A read-only file the FUSE server serves: its size, and how a piece of it is read.</summary>
internal interface IServedFile
{
    long Size { get; }

    /// <summary>Fills <paramref name="into"/> from <paramref name="offset"/> (the caller keeps within <see cref="Size"/>); returns the bytes read.</summary>
    int Read(long offset, Span<byte> into);
}

/// <summary>
/// A minimal FUSE file system in this process (docs/operations.md, "File-level restore"): one
/// read-only directory of files, each read on demand, spoken over /dev/fuse in the kernel's own
/// protocol (fuse(4); no libfuse). It serves a restore point's disks so that a loop device can sit
/// on each without the disk being restored anywhere. Files may be added while it runs (the LVM
/// volumes found on the disks). Requests are answered one at a time on one thread.
/// </summary>
internal sealed class FuseServer : IDisposable
{
    // Opcodes (include/uapi/linux/fuse.h)
    private const uint Lookup = 1, Forget = 2, GetAttr = 3, SetAttr = 4, Open = 14, Read = 15, StatFs = 17, Release = 18, Fsync = 20,
        GetXattr = 22, ListXattr = 23, Flush = 25, Init = 26, OpenDir = 27, ReadDir = 28, ReleaseDir = 29, FsyncDir = 30, Access = 34,
        Interrupt = 36, Destroy = 38, BatchForget = 42;

    private const int InHeaderSize = 40, OutHeaderSize = 16, AttrSize = 88;
    private const uint ProtocolMajor = 7, ProtocolMinor = 31;
    private const ulong RootNode = 1;
    private const uint DirectoryMode = 0x4000 | 0x16D, FileMode = 0x8000 | 0x124;   // S_IFDIR 0555, S_IFREG 0444
    private const int MaxWrite = 1 << 20;

    private readonly int _fd;
    private readonly string _mountPoint;
    private readonly Thread _thread;
    private readonly ConcurrentDictionary<string, (ulong Node, IServedFile File)> _files = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ulong, IServedFile> _byNode = new();
    private long _nextNode = (long)RootNode;
    private bool _disposed;

    /// <summary>What went wrong while serving (a read of a damaged chunk answers EIO; the message is kept for the report).</summary>
    public string? LastError { get; private set; }

    private FuseServer(int fd, string mountPoint)
    {
        (_fd, _mountPoint) = (fd, mountPoint);
        _thread = new Thread(Serve) { IsBackground = true, Name = "fuse " + mountPoint };
    }

    /// <summary>Mounts an empty read-only directory at <paramref name="mountPoint"/> and serves it until disposed.</summary>
    public static FuseServer Mount(string mountPoint)
    {
        Directory.CreateDirectory(mountPoint);
        var fd = FuseNative.OpenFuseDevice();
        try
        {
            FuseNative.MountFuse(fd, mountPoint, "proxybackup");
        }
        catch
        {
            FuseNative.Close(fd);
            throw;
        }
        var server = new FuseServer(fd, mountPoint);
        server._thread.Start();
        return server;
    }

    public string PathOf(string name) => Path.Combine(_mountPoint, name);

    /// <summary>Serves a file under <paramref name="name"/> (no slash) from now on.</summary>
    public string Add(string name, IServedFile file)
    {
        var node = (ulong)Interlocked.Increment(ref _nextNode);
        if (!_files.TryAdd(name, (node, file))) throw new InvalidOperationException($"{name} is served already.");
        _byNode[node] = file;
        return PathOf(name);
    }

    private unsafe void Serve()
    {
        var buffer = new byte[MaxWrite + 64 * 1024];
        var reply = new byte[MaxWrite + 4096];
        while (true)
        {
            nint n;
            fixed (byte* p = buffer) n = FuseNative.Read(_fd, p, buffer.Length);
            if (n < 0)
            {
                var errno = Marshal.GetLastPInvokeError();
                if (errno is FuseNative.Eintr or FuseNative.Eagain || errno == 2 /* ENOENT: an interrupted request */) continue;
                return; // ENODEV: unmounted
            }
            if (n < InHeaderSize) continue;
            var request = buffer.AsSpan(0, (int)n);
            var opcode = BinaryPrimitives.ReadUInt32LittleEndian(request[4..]);
            var unique = BinaryPrimitives.ReadUInt64LittleEndian(request[8..]);
            var node = BinaryPrimitives.ReadUInt64LittleEndian(request[16..]);
            var body = request[InHeaderSize..];
            if (opcode is Forget or BatchForget or Interrupt) continue; // no reply
            int length, error = 0;
            try
            {
                length = Handle(opcode, node, body, reply.AsSpan(OutHeaderSize), out error);
            }
            // Whatever a read meets (a damaged chunk, a bug), the kernel gets an answer: a request left
            // unanswered would hang every reader of the mount.
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                LastError = e.Message;
                (length, error) = (0, FuseNative.Eio);
            }
            if (error != 0) length = 0;
            BinaryPrimitives.WriteUInt32LittleEndian(reply, (uint)(OutHeaderSize + length));
            BinaryPrimitives.WriteInt32LittleEndian(reply.AsSpan(4), -error);
            BinaryPrimitives.WriteUInt64LittleEndian(reply.AsSpan(8), unique);
            fixed (byte* p = reply) FuseNative.Write(_fd, p, OutHeaderSize + length);
            if (opcode == Destroy) return;
        }
    }

    /// <summary>Answers one request into <paramref name="o"/>; returns the answer's length, or sets <paramref name="error"/> (an errno).</summary>
    private int Handle(uint opcode, ulong node, ReadOnlySpan<byte> body, Span<byte> o, out int error)
    {
        error = 0;
        switch (opcode)
        {
            case Init:
                o[..64].Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(o, ProtocolMajor);
                BinaryPrimitives.WriteUInt32LittleEndian(o[4..], Math.Min(ProtocolMinor, BinaryPrimitives.ReadUInt32LittleEndian(body[4..])));
                BinaryPrimitives.WriteUInt32LittleEndian(o[8..], BinaryPrimitives.ReadUInt32LittleEndian(body[8..])); // max_readahead as asked
                BinaryPrimitives.WriteUInt16LittleEndian(o[16..], 16);                                                 // max_background
                BinaryPrimitives.WriteUInt16LittleEndian(o[18..], 12);                                                 // congestion_threshold
                BinaryPrimitives.WriteUInt32LittleEndian(o[20..], MaxWrite);
                BinaryPrimitives.WriteUInt32LittleEndian(o[24..], 1);                                                  // time_gran
                return 64;
            case Lookup:
                var name = Encoding.UTF8.GetString(body[..Math.Max(0, body.IndexOf((byte)0))]);
                if (node != RootNode || !_files.TryGetValue(name, out var found)) { error = FuseNative.Enoent; return 0; }
                o[..40].Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(o, found.Node);
                BinaryPrimitives.WriteUInt64LittleEndian(o[8..], 1);       // generation
                BinaryPrimitives.WriteUInt64LittleEndian(o[16..], 3600);   // entry_valid (s)
                BinaryPrimitives.WriteUInt64LittleEndian(o[24..], 3600);   // attr_valid (s)
                WriteAttr(o[40..], found.Node, found.File);
                return 40 + AttrSize;
            case GetAttr:
                if (node != RootNode && !_byNode.ContainsKey(node)) { error = FuseNative.Enoent; return 0; }
                o[..16].Clear();
                BinaryPrimitives.WriteUInt64LittleEndian(o, 3600);
                WriteAttr(o[16..], node, node == RootNode ? null : _byNode[node]);
                return 16 + AttrSize;
            case Open or OpenDir:
                o[..16].Clear(); // fh 0, no flags
                return 16;
            case Read:
                if (!_byNode.TryGetValue(node, out var file)) { error = FuseNative.Ebadf; return 0; }
                var offset = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
                var size = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(body[16..]), (uint)MaxWrite);
                if (offset >= file.Size) return 0;
                var want = (int)Math.Min(size, file.Size - offset);
                var got = 0;
                while (got < want)
                {
                    var n = file.Read(offset + got, o.Slice(got, want - got));
                    if (n <= 0) break;
                    got += n;
                }
                return got;
            case ReadDir:
                return ReadDirectory(node, body, o, out error);
            case StatFs:
                o[..80].Clear();
                BinaryPrimitives.WriteUInt32LittleEndian(o[40..], 4096); // bsize
                BinaryPrimitives.WriteUInt32LittleEndian(o[44..], 255);  // namelen
                BinaryPrimitives.WriteUInt32LittleEndian(o[48..], 4096); // frsize
                return 80;
            case Release or ReleaseDir or Flush or Fsync or FsyncDir or Access or Destroy:
                return 0;
            case SetAttr:
                error = FuseNative.Erofs;
                return 0;
            case GetXattr or ListXattr:
                error = FuseNative.Enodata;
                return 0;
            default:
                error = FuseNative.Enosys;
                return 0;
        }
    }

    private static void WriteAttr(Span<byte> a, ulong node, IServedFile? file)
    {
        a[..AttrSize].Clear();
        var size = file?.Size ?? 0;
        BinaryPrimitives.WriteUInt64LittleEndian(a, node);
        BinaryPrimitives.WriteUInt64LittleEndian(a[8..], (ulong)size);
        BinaryPrimitives.WriteUInt64LittleEndian(a[16..], (ulong)((size + 511) / 512));
        BinaryPrimitives.WriteUInt32LittleEndian(a[60..], file is null ? DirectoryMode : FileMode);
        BinaryPrimitives.WriteUInt32LittleEndian(a[64..], file is null ? 2u : 1u); // nlink
        BinaryPrimitives.WriteUInt32LittleEndian(a[80..], 4096);                  // blksize
    }

    /// <summary>The root directory's entries from the offset asked for, as many as fit (struct fuse_dirent, 8-byte aligned).</summary>
    private int ReadDirectory(ulong node, ReadOnlySpan<byte> body, Span<byte> o, out int error)
    {
        error = 0;
        if (node != RootNode) { error = FuseNative.Enoent; return 0; }
        var from = (long)BinaryPrimitives.ReadUInt64LittleEndian(body[8..]);
        var size = (int)BinaryPrimitives.ReadUInt32LittleEndian(body[16..]);
        var entries = new List<(ulong Node, string Name, uint Type)> { (RootNode, ".", 4), (RootNode, "..", 4) };
        entries.AddRange(_files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => (f.Value.Node, f.Key, 8u)));
        var used = 0;
        for (var i = (int)from; i < entries.Count; i++)
        {
            var nameBytes = Encoding.UTF8.GetBytes(entries[i].Name);
            var entrySize = (24 + nameBytes.Length + 7) & ~7;
            if (used + entrySize > size) break;
            var e = o.Slice(used, entrySize);
            e.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(e, entries[i].Node);
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], (ulong)(i + 1)); // the offset of the next entry
            BinaryPrimitives.WriteUInt32LittleEndian(e[16..], (uint)nameBytes.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(e[20..], entries[i].Type);
            nameBytes.CopyTo(e[24..]);
            used += entrySize;
        }
        return used;
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        FuseNative.Unmount(_mountPoint);
        // The read of /dev/fuse returns ENODEV once the connection is gone; a lazy unmount of a
        // busy mount keeps it until its last user leaves, so the thread is not waited for long.
        _thread.Join(TimeSpan.FromSeconds(5));
        FuseNative.Close(_fd);
        try { Directory.Delete(_mountPoint); }
        catch (IOException) { }
    }
}
