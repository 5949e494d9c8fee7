using System.Diagnostics;
using System.Globalization;
using ProxyBackup.Contracts;
using ProxyBackup.Repository;

namespace ProxyBackup.FileRestore;

/// <summary>A file system found in a restore point: where it is, what it is, and where it is mounted (null, with a note, when it is not).</summary>
public sealed record FileVolume(string Name, string Source, string? FileSystem, long Size, string? MountPath, string? Note);

/// <summary>An entry of a directory in a restore point: d directory, f file, l symbolic link, o anything else.</summary>
public sealed record FileEntry(string Name, char Kind, long Size, DateTimeOffset Modified, UnixFileMode Mode, string? LinkTarget);

/// <summary>What a get copied.</summary>
public sealed record FilesCopied(int Files, int Directories, int Links, long Bytes, IReadOnlyList<string> Skipped);

/// <summary>Refused paths and missing files: one clear message.</summary>
public sealed class FileRestoreException(string message) : UserFacingException(message);

/// <summary>
/// A restore point's files, read without restoring its disks (docs/operations.md, "File-level
/// restore"): each disk served read-only by a FUSE file system in this process and read on demand
/// through the repository's random-access stream; a read-only loop device on each (partitions
/// scanned); LVM volumes found by reading their metadata and served as files of their own; every
/// ext2/3/4 and xfs file system mounted read-only, without journal replay, under one session
/// directory. Dispose takes it all down; a session whose process died is taken down by
/// <see cref="CleanStale"/>. Needs root (loop devices, mounts).
/// </summary>
public sealed class RestorePointFiles : IDisposable
{
    private readonly string _directory;
    private readonly FuseServer _fuse;
    private readonly RepositoryLock _lock;
    private readonly List<string> _loops = [];
    private readonly List<FileVolume> _volumes = [];

    private RestorePointFiles(string directory, FuseServer fuse, RepositoryLock held)
    {
        (_directory, _fuse, _lock) = (directory, fuse, held);
    }

    public IReadOnlyList<FileVolume> Volumes => _volumes;

    /// <summary>
    /// Serves and mounts the point's disks (all, or <paramref name="disks"/>) in a new session under
    /// <paramref name="runDirectory"/>. The repository stays share-locked for the session, so no
    /// garbage collection takes a chunk away while it is read.
    /// </summary>
    public static async Task<RestorePointFiles> OpenAsync(BackupRepository repository, RestorePoint point, IReadOnlyCollection<string>? disks, string runDirectory, CancellationToken ct = default)
    {
        if (!Environment.IsPrivilegedProcess) throw new FileRestoreException("File-level restore needs root (loop devices and mounts): run it with sudo.");
        CleanStale(runDirectory);
        var chosen = disks is { Count: > 0 } ? disks.ToList() : point.Disks.Select(d => d.Disk).ToList();
        foreach (var d in chosen) point.Disk(d); // a disk the point lacks is named before anything is made
        var held = await RepositoryLock.AcquireAsync(repository, exclusive: false, purpose: $"file-level restore of {point.Source}/{point.Id}", repository.SharedLockWait, ct).ConfigureAwait(false);
        var directory = Path.Combine(runDirectory, $"{Environment.ProcessId}-{Process.GetCurrentProcess().StartTime.ToUniversalTime().Ticks}-{Guid.NewGuid():N}"[..48]);
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        await File.WriteAllTextAsync(Path.Combine(directory, "owner"), OwnerLine(), ct).ConfigureAwait(false);
        FuseServer fuse;
        try { fuse = FuseServer.Mount(Path.Combine(directory, "disks")); }
        catch
        {
            held.Dispose();
            Directory.Delete(directory, recursive: true);
            throw;
        }
        var session = new RestorePointFiles(directory, fuse, held);
        try
        {
            session.Build(repository, point, chosen, ct);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    private static string OwnerLine() => $"{Environment.ProcessId} {Process.GetCurrentProcess().StartTime.ToUniversalTime().Ticks}";

    private void Build(BackupRepository repository, RestorePoint point, List<string> disks, CancellationToken ct)
    {
        var pvs = new List<(LvmPhysicalVolume Pv, IServedFile File, long Offset)>();
        foreach (var disk in disks)
        {
            ct.ThrowIfCancellationRequested();
            var file = new StreamFile(repository.OpenDisk(point, disk));
            var diskPath = _fuse.Add($"disk{disk}.raw", file);
            // Partitions are read here, not by the kernel (PartitionTable): each one is a file of its own.
            // The table is the guest's data: a damaged one leaves the whole disk to be read as it is.
            IReadOnlyList<DiskPartition> partitions;
            try { partitions = PartitionTable.Read(file.ReadAt, file.Size); }
            catch (InvalidDataException)
            {
                partitions = [];
            }
            var devices = partitions.Count == 0
                ? [(Name: $"disk{disk}", Path: diskPath, Start: 0L, Size: file.Size)]
                : partitions.Select(p => (Name: $"disk{disk}p{p.Number}", Path: _fuse.Add($"disk{disk}p{p.Number}.raw", new MappedFile([(file, p.Start, p.Length)])), p.Start, Size: p.Length)).ToList();
            foreach (var (name, path, start, size) in devices)
            {
                var device = Attach(path);
                var type = Probe(device);
                if (type == "LVM2_member")
                {
                    LvmPhysicalVolume? pv;
                    string note;
                    try
                    {
                        pv = LvmMetadata.Read((offset, count) => file.ReadAt(start + offset, count));
                        note = pv is null ? "no LVM label" : $"LVM physical volume of volume group {pv.VolumeGroup}";
                    }
                    catch (Exception e) when (e is InvalidDataException or FormatException or OverflowException or ArgumentException or IndexOutOfRangeException)
                    {
                        (pv, note) = (null, $"LVM metadata not read: {e.Message}");
                    }
                    if (pv is not null) pvs.Add((pv, file, start));
                    _volumes.Add(new FileVolume(name, device, type, size, null, note));
                    continue;
                }
                MountVolume(name, device, type, size);
            }
        }
        foreach (var lv in pvs.GroupBy(p => p.Pv.VolumeGroup).SelectMany(g => g.First().Pv.Group.Volumes))
        {
            var name = $"{lv.VolumeGroup}-{lv.Name}";
            if (lv.Unsupported is { } why) { _volumes.Add(new FileVolume(name, "lvm", null, 0, null, $"not read: {why}")); continue; }
            var runs = new List<(IServedFile, long, long)>();
            foreach (var (uuid, offset, length) in lv.Extents)
            {
                if (pvs.FirstOrDefault(p => p.Pv.Uuid == uuid) is not { File: not null } pv) { runs.Clear(); break; }
                runs.Add((pv.File, pv.Offset + offset, length));
            }
            if (runs.Count == 0) { _volumes.Add(new FileVolume(name, "lvm", null, 0, null, "not read: a physical volume of it is not on the disks chosen")); continue; }
            var device = Attach(_fuse.Add($"lv-{name}.raw", new MappedFile(runs)));
            MountVolume(name, device, Probe(device), runs.Sum(r => r.Item3));
        }
    }

    /// <summary>A read-only loop device on a served file (no partition scan: PartitionTable reads them).</summary>
    private string Attach(string path)
    {
        var device = Tool("losetup", "--read-only", "--find", "--show", path).Trim();
        _loops.Add(device);
        return device;
    }

    /// <summary>The file system or content a device holds, by blkid's low-level probe (no cache); null: nothing known.</summary>
    private static string? Probe(string device)
    {
        var (code, output, _) = Run("blkid", "-p", "-o", "export", device);
        if (code != 0) return null;
        return output.Split('\n').Select(l => l.Split('=', 2)).FirstOrDefault(kv => kv.Length == 2 && kv[0] == "TYPE")?[1];
    }

    /// <summary>Mount options that read a file system as it is in the point: read-only, and no journal replay or log recovery (which would write).</summary>
    private static string? MountOptions(string? type) => type switch
    {
        "ext4" or "ext3" => "ro,noload,nodev,nosuid,noexec",
        "ext2" or "vfat" or "btrfs" => "ro,nodev,nosuid,noexec",
        "xfs" => "ro,norecovery,nouuid,nodev,nosuid,noexec",
        _ => null,
    };

    private void MountVolume(string name, string device, string? type, long size)
    {
        if (MountOptions(type) is not { } options)
        {
            _volumes.Add(new FileVolume(name, device, type, size, null, type is null ? "no file system found" : $"{type}: not a file system this reads"));
            return;
        }
        var target = Path.Combine(_directory, "volumes", name);
        Directory.CreateDirectory(target);
        var (code, _, error) = Run("mount", "-t", type!, "-o", options, device, target);
        _volumes.Add(code == 0
            ? new FileVolume(name, device, type, size, target, null)
            : new FileVolume(name, device, type, size, null, $"could not be mounted: {error.Trim()}"));
    }

    /// <summary>
    /// The entries at <paramref name="path"/> ("" lists the volumes; "VOLUME/dir/..." a directory, or the
    /// one entry of a file). Symbolic links are followed inside their volume only.
    /// </summary>
    public IReadOnlyList<FileEntry> List(string path)
    {
        var parts = Split(path);
        if (parts.Count == 0)
            return [.. _volumes.Where(v => v.MountPath is not null).Select(v => new FileEntry(v.Name, 'd', v.Size, DateTimeOffset.MinValue, (UnixFileMode)0x16D, null))];
        var (root, inner) = (MountOf(parts[0]), parts.Skip(1).ToList());
        var full = Resolve(root, inner, followLast: true, string.Join('/', parts));
        if (File.GetAttributes(full).HasFlag(FileAttributes.Directory))
            return [.. new DirectoryInfo(full).EnumerateFileSystemInfos().OrderBy(i => i.Name, StringComparer.Ordinal).Select(Entry)];
        return [Entry(new FileInfo(full))];
    }

    /// <summary>Copies a file, or a directory with everything in it, into <paramref name="targetDirectory"/>; nothing there is overwritten.</summary>
    public FilesCopied Get(string path, string targetDirectory)
    {
        var parts = Split(path);
        if (parts.Count < 2) throw new FileRestoreException($"'{path}' is not a path in a volume: give VOLUME/path (volumes: {string.Join(", ", _volumes.Where(v => v.MountPath is not null).Select(v => v.Name))}).");
        var root = MountOf(parts[0]);
        var source = Resolve(root, parts.Skip(1).ToList(), followLast: false, string.Join('/', parts));
        Directory.CreateDirectory(targetDirectory);
        var counter = new CopyCounter();
        Copy(source, Path.Combine(targetDirectory, Path.GetFileName(source)), counter);
        return new FilesCopied(counter.Files, counter.Directories, counter.Links, counter.Bytes, counter.Skipped);
    }

    private sealed class CopyCounter
    {
        public int Files, Directories, Links;
        public long Bytes;
        public List<string> Skipped { get; } = [];
    }

    private static void Copy(string source, string target, CopyCounter counter)
    {
        var info = new FileInfo(source);
        if (File.Exists(target) || Directory.Exists(target) || new FileInfo(target).LinkTarget is not null)
        {
            counter.Skipped.Add($"{target}: exists, not overwritten");
            return;
        }
        var type = FuseNative.FileType(source);
        if (type == FuseNative.SymbolicLink)
        {
            File.CreateSymbolicLink(target, info.LinkTarget!);
            counter.Links++;
        }
        else if (type == FuseNative.Directory)
        {
            Directory.CreateDirectory(target);
            foreach (var child in new DirectoryInfo(source).EnumerateFileSystemInfos()) Copy(child.FullName, Path.Combine(target, child.Name), counter);
            File.SetUnixFileMode(target, File.GetUnixFileMode(source));
            Directory.SetLastWriteTimeUtc(target, Directory.GetLastWriteTimeUtc(source));
            counter.Directories++;
        }
        else if (type != FuseNative.RegularFile)
        {
            // A device, a pipe or a socket: reading one would block or read the appliance's own device.
            counter.Skipped.Add($"{source}: not a regular file");
        }
        else
        {
            File.Copy(source, target);
            File.SetUnixFileMode(target, File.GetUnixFileMode(source));
            File.SetLastWriteTimeUtc(target, File.GetLastWriteTimeUtc(source));
            counter.Files++;
            counter.Bytes += info.Length;
        }
    }

    private static FileEntry Entry(FileSystemInfo i) => new(i.Name,
        FuseNative.FileType(i.FullName) switch { FuseNative.SymbolicLink => 'l', FuseNative.Directory => 'd', FuseNative.RegularFile => 'f', _ => 'o' },
        i is FileInfo f && i.LinkTarget is null ? f.Length : 0, new DateTimeOffset(i.LastWriteTimeUtc, TimeSpan.Zero), File.GetUnixFileMode(i.FullName), i.LinkTarget);

    private static List<string> Split(string path)
    {
        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries).ToList();
        if (parts.Any(p => p is "." or "..")) throw new FileRestoreException($"'{path}' holds '.' or '..': give the path from the volume down.");
        return parts;
    }

    private string MountOf(string volume) =>
        _volumes.FirstOrDefault(v => v.Name == volume) switch
        {
            { MountPath: { } mount } => mount,
            { } other => throw new FileRestoreException($"Volume {volume} is not readable: {other.Note}."),
            null => throw new FileRestoreException($"No volume {volume} in this restore point (volumes: {string.Join(", ", _volumes.Where(v => v.MountPath is not null).Select(v => v.Name))})."),
        };

    /// <summary>
    /// The path under a volume's mount, following symbolic links as the guest would but inside the
    /// volume only: an absolute link starts at the volume's root, and nothing resolves above it.
    /// </summary>
    private static string Resolve(string root, List<string> parts, bool followLast, string shown)
    {
        var current = root;
        var pending = new Queue<string>(parts);
        var links = 0;
        while (pending.TryDequeue(out var part))
        {
            var next = Path.Combine(current, part);
            var info = new FileInfo(next);
            if (info.LinkTarget is { } target && (pending.Count > 0 || followLast))
            {
                if (++links > 40) throw new FileRestoreException($"Too many symbolic links under {shown}.");
                var rest = pending.ToList();
                pending.Clear();
                var start = target.StartsWith('/') ? root : current;
                foreach (var p in target.Split('/', StringSplitOptions.RemoveEmptyEntries).Concat(rest)) pending.Enqueue(p);
                current = start;
                continue;
            }
            if (part == "..") { if (current != root) current = Path.GetDirectoryName(current)!; continue; }
            if (part == ".") continue;
            if (!info.Exists && !Directory.Exists(next) && info.LinkTarget is null) throw new FileRestoreException($"{shown} does not exist in this restore point.");
            current = next;
        }
        return current;
    }

    public void Dispose()
    {
        TearDown(_directory, _loops);
        _fuse.Dispose();
        _lock.Dispose();
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>Unmounts every file system under the session and detaches its loop devices (newest first, LVM volumes before the disks under them).</summary>
    private static void TearDown(string directory, IEnumerable<string> loops)
    {
        var volumes = Path.Combine(directory, "volumes");
        foreach (var mount in MountTable.Under(volumes).OrderByDescending(m => m.Length)) Run("umount", "--lazy", mount);
        // Only a loop device still on this session's files: a number freed since may be another's now.
        foreach (var loop in loops.Reverse().Where(l => BackingFile(l)?.StartsWith(directory + "/", StringComparison.Ordinal) == true)) Run("losetup", "--detach", loop);
    }

    /// <summary>
    /// Takes down the sessions whose process is gone (killed, crashed): their mounts, loop devices and
    /// FUSE mount. Returns the sessions removed. Run before every new session and by `files clean`.
    /// </summary>
    public static IReadOnlyList<string> CleanStale(string runDirectory)
    {
        if (!Directory.Exists(runDirectory)) return [];
        var removed = new List<string>();
        foreach (var session in Directory.GetDirectories(runDirectory))
        {
            var owner = Path.Combine(session, "owner");
            if (File.Exists(owner) && Alive(File.ReadAllText(owner))) continue;
            var disks = Path.Combine(session, "disks");
            TearDown(session, LoopsOn(disks));
            FuseNative.Unmount(disks);
            try { Directory.Delete(session, recursive: true); }
            catch (IOException) { continue; }
            removed.Add(session);
        }
        return removed;
    }

    /// <summary>The owner line's process still runs (the same pid and start time: a reused pid is not it).</summary>
    private static bool Alive(string ownerLine)
    {
        var parts = ownerLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length != 2 || !int.TryParse(parts[0], CultureInfo.InvariantCulture, out var pid)) return false;
        try
        {
            using var process = Process.GetProcessById(pid);
            return process.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture) == parts[1];
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    /// <summary>The loop devices whose backing file is under <paramref name="directory"/>, newest (highest number) last.</summary>
    private static List<string> LoopsOn(string directory) =>
        [.. Directory.Exists("/sys/block") ? Directory.GetDirectories("/sys/block", "loop*").Select(d => "/dev/" + Path.GetFileName(d))
            .Where(l => BackingFile(l)?.StartsWith(directory + "/", StringComparison.Ordinal) == true) : []];

    /// <summary>The file a loop device reads (sysfs: loop/backing_file), or null when it has none.</summary>
    private static string? BackingFile(string loop)
    {
        var path = $"/sys/block/{Path.GetFileName(loop)}/loop/backing_file";
        try { return File.Exists(path) ? File.ReadAllText(path).Trim() : null; }
        catch (IOException) { return null; }
    }

    private static string Tool(string file, params string[] args)
    {
        var (code, output, error) = Run(file, args);
        return code == 0 ? output : throw new FileRestoreException($"{file} {string.Join(' ', args)} failed: {error.Trim()}");
    }

    private static (int Code, string Output, string Error) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEndAsync();
            var error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output.Result, error);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (127, "", $"{file} is not installed ({e.Message})");
        }
    }
}
