using System.CommandLine;
using System.Diagnostics;
using ProxyBackup.Catalog;
using ProxyBackup.Engine;
using ProxyBackup.Repository;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup storage show|setup`: the repository's own disk (a persistent datablock) or NFS share,
/// which outlives the proxy VM (docs/operations.md, "Repository storage"). A disk is formatted only
/// when it is blank and the operator agreed; it is mounted by UUID from /etc/fstab, and the mount point
/// is recorded so that an unmounted disk is refused instead of filled from below.
/// </summary>
internal static class StorageCommand
{
    /// <summary>The label of a file system this command made: a re-created proxy recognises its repository disk by it.</summary>
    internal const string Label = "proxybackup-repo";

    internal static readonly Option<string> Fstab = new("--fstab") { Description = "The fstab the repository's mount is recorded in.", DefaultValueFactory = _ => "/etc/fstab", Recursive = true };

    public static Command Build()
    {
        var cmd = new Command("storage", "The repository's own disk or NFS share: show it, or set it up (format a blank disk, mount it, record it in fstab).");
        cmd.Options.Add(DaemonCommand.ConfigFile);
        cmd.Options.Add(Fstab);
        cmd.Subcommands.Add(ShowCommand());
        cmd.Subcommands.Add(SetupCommand());
        return cmd;
    }

    private static Command ShowCommand()
    {
        var json = new Option<bool>("--json") { Description = "Print the result as JSON." };
        var c = new Command("show", "What holds the repository: its mount, the fstab entry, and the disks that could hold it.") { json };
        c.SetAction(p =>
        {
            var config = AppConfig.Load(p.GetValue(DaemonCommand.ConfigFile)!);
            var mountPoint = config.Repository.MountPoint;
            var mount = mountPoint is null ? null : MountTable.At(mountPoint);
            var entry = mountPoint is null ? null : FstabFile.Read(p.GetValue(Fstab)!).FirstOrDefault(e => e.MountPoint == mountPoint);
            var disks = BlockDisks.Candidates();
            var drive = mount is null ? null : new DriveInfo(mountPoint!);
            var state = new StorageState(config.Repository.Path, mountPoint, mount is not null, mount?.Source, mount?.FileSystem, entry?.Line, drive?.TotalSize, drive?.AvailableFreeSpace, disks);
            if (p.GetValue(json)) { CliFormat.PrintJson(state); return 0; }
            Console.WriteLine($"Repository   {state.RepositoryPath}");
            Console.WriteLine(mountPoint is null
                ? "Storage      not set up: the repository is a directory of the root disk, lost with the proxy VM ('proxybackup storage setup --disk ...')"
                : mount is null
                    ? $"Storage      {mountPoint}: NOT MOUNTED (fstab: {entry?.Line ?? "no entry"}); backups are refused until it is"
                    : $"Storage      {mount.Source} ({mount.FileSystem}) mounted at {mountPoint}: {CliFormat.Bytes(state.FreeBytes ?? 0)} free of {CliFormat.Bytes(state.TotalBytes ?? 0)}");
            if (entry is not null) Console.WriteLine($"fstab        {entry.Line}");
            Console.WriteLine(disks.Count == 0 ? "Disks        no other writable disk is attached to this VM" : "Disks        (writable, not mounted, not the system's)");
            foreach (var d in disks) Console.WriteLine($"  {d.Path,-12} {CliFormat.Bytes(d.Size),10}  {d.Content}");
            return 0;
        });
        return c;
    }

    private sealed record StorageState(string RepositoryPath, string? MountPoint, bool Mounted, string? Source, string? FileSystem, string? FstabEntry,
        long? TotalBytes, long? FreeBytes, IReadOnlyList<BlockDisks.Disk> Disks);

    private static Command SetupCommand()
    {
        var disk = new Option<string?>("--disk") { Description = "The repository's disk (e.g. vdb or /dev/vdb): a persistent datablock attached to this VM." };
        var nfs = new Option<string?>("--nfs") { Description = "An NFS export (host:/path) instead of a disk." };
        var format = new Option<bool>("--format") { Description = "Format the disk with ext4 if it is blank (your consent; a disk that holds anything is never formatted)." };
        var mountPoint = new Option<string?>("--mount-point") { Description = "Where to mount it (default: Repository:Path)." };
        var fromContext = new Option<bool>("--from-context") { Description = "First boot: take the choice from OpenNebula's context (PROXYBACKUP_REPOSITORY_NFS, PROXYBACKUP_REPOSITORY_FORMAT); the only candidate disk is used." };
        var contextFile = new Option<string?>("--context-file") { Description = "Read the context variables from this file instead of the one-context locations." };
        var c = new Command("setup", "Put the repository on its own disk or NFS share: format a blank disk (with --format), mount it by UUID, record it in fstab.")
            { disk, nfs, format, mountPoint, fromContext, contextFile };
        c.Validators.Add(r =>
        {
            if (r.GetValue(disk) is not null && r.GetValue(nfs) is not null) r.AddError("Give --disk or --nfs, not both.");
            if (r.GetValue(disk) is null && r.GetValue(nfs) is null && !r.GetValue(fromContext)) r.AddError("Give --disk DEVICE or --nfs HOST:/PATH (or --from-context).");
        });
        c.SetAction(p =>
        {
            var configPath = p.GetValue(DaemonCommand.ConfigFile)!;
            var config = AppConfig.Load(configPath);
            var target = p.GetValue(mountPoint) ?? config.Repository.Path;
            if (!Path.IsPathRooted(target)) throw new CliException($"--mount-point {target}: an absolute path.");
            target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(target));
            if (!MountTable.Contains(target, config.Repository.Path))
                throw new CliException($"Repository:Path {config.Repository.Path} does not lie on {target}: choose a mount point that holds it.");
            // The configuration that will record the mount is checked first: a setup that could not record it does nothing.
            var configured = config.Repository.MountPoint;
            config.Repository.MountPoint = target;
            var problems = config.Problems();
            if (problems.Count > 0) throw new CliException($"{configPath} cannot record the mount: {string.Join("; ", problems)}.");
            var setup = new StorageSetup(target, p.GetValue(Fstab)!);
            string? nfsExport = p.GetValue(nfs), device = p.GetValue(disk);
            var consent = p.GetValue(format);
            if (p.GetValue(fromContext))
            {
                if (configured is { } already)
                {
                    Console.WriteLine($"The repository storage is already set up at {already} ({(MountTable.At(already) is { } m ? $"{m.Source} mounted" : "NOT MOUNTED")}); nothing changed.");
                    return 0;
                }
                // Only the appliance's first boot chooses by itself: on a later boot a writable blank disk
                // may be one OpenNebula attached for a restore (hot-plugged disks survive a reboot).
                var firstBootDone = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(config.Catalog.Path))!, "storage-from-context");
                if (File.Exists(firstBootDone))
                {
                    Console.WriteLine("The repository storage was left to the operator at first boot; nothing changed ('proxybackup storage setup --disk ...').");
                    return 0;
                }
                Directory.CreateDirectory(Path.GetDirectoryName(firstBootDone)!);
                File.WriteAllText(firstBootDone, $"{DateTimeOffset.UtcNow:o}\n");
                var vars = ProxyIdentity.ContextVariables(p.GetValue(contextFile) is { } f ? [f] : null);
                nfsExport = vars.GetValueOrDefault("PROXYBACKUP_REPOSITORY_NFS") is { Length: > 0 } export ? export : null;
                consent = string.Equals(vars.GetValueOrDefault("PROXYBACKUP_REPOSITORY_FORMAT"), "YES", StringComparison.OrdinalIgnoreCase);
                if (nfsExport is null)
                {
                    var candidates = BlockDisks.Candidates();
                    if (candidates.Count != 1)
                    {
                        Console.WriteLine(candidates.Count == 0
                            ? $"No disk for the repository is attached: it stays a directory of the root disk ({config.Repository.Path}), lost with this VM. Attach a persistent datablock and run 'proxybackup storage setup --disk ...'."
                            : $"{candidates.Count} disks could hold the repository ({string.Join(", ", candidates.Select(d => d.Path))}): choose one with 'proxybackup storage setup --disk ...'.");
                        return 0;
                    }
                    device = candidates[0].Path;
                }
            }
            var result = nfsExport is not null ? setup.Nfs(nfsExport) : setup.Disk(device!, consent);
            config.Repository.MountPoint = target;
            config.Save(configPath);
            Console.WriteLine(result);
            Console.WriteLine($"Recorded in {setup.FstabPath} and in {configPath} (Repository:MountPoint): the repository is refused whenever nothing is mounted there.");
            Console.WriteLine(RepositoryHint(config, configPath));
            return 0;
        });
        return c;
    }

    /// <summary>Where the repository lives now, in one line for the consoles.</summary>
    internal static string State(AppConfig config) => config.Repository.MountPoint is { } configured
        ? $"The repository's storage is set up at {configured} ({(MountTable.At(configured) is { } m ? $"{m.Source} mounted" : "NOT MOUNTED")})."
        : $"The repository ({config.Repository.Path}) is on the root disk: it is lost with this VM. Put it on a persistent datablock or an NFS share.";

    /// <summary>What setting up <paramref name="device"/> would do, for the summary an operator confirms: format it (only when blank) or use it as it is.</summary>
    internal static (bool Format, string Summary) Plan(string device, string target, string fstab)
    {
        var disk = BlockDisks.Describe(device.StartsWith('/') ? device : "/dev/" + device);
        var format = disk.Blank && disk.FileSystem is null && !disk.Partitioned;
        return (format, format
            ? $"Format {disk.Path} ({CliFormat.Bytes(disk.Size)}, blank) with ext4, mount it at {target} and record it in {fstab}?"
            : $"Mount {disk.Path} ({CliFormat.Bytes(disk.Size)}, {disk.Content}) at {target} as it is, and record it in {fstab}? Nothing on it is changed.");
    }

    /// <summary>
    /// A console's setup records its mount point in the saved configuration at once (with the path it
    /// guards), so that it protects the disk even if the session's other changes are discarded.
    /// </summary>
    internal static void RecordMountPoint(string configPath, string target)
    {
        if (!File.Exists(configPath)) return;
        var saved = AppConfig.Load(configPath);
        (saved.Repository.Path, saved.Repository.MountPoint) = (target, target);
        saved.Save(configPath);
    }

    /// <summary>What the mounted storage holds: a repository to use (its restore points listed in the catalog again), or none yet.</summary>
    internal static string RepositoryHint(AppConfig config, string configPath)
    {
        if (!File.Exists(Path.Combine(config.Repository.Path, "config")))
            return $"No repository in {config.Repository.Path} yet: create it with 'proxybackup repository init --repo {config.Repository.Path} [--encrypt]' or in 'proxybackup configure'.";
        try
        {
            var secrets = File.Exists(config.SecretsFile) ? AppSecrets.Load(config.SecretsFile!) : new AppSecrets();
            var repository = config.Repository.Open(secrets);
            // A re-created proxy starts with an empty catalog: list what the disk kept (docs/operations.md, "Disaster recovery").
            var count = config.Catalog.Open().Rebuild(repository, config.OpenNebula.Sources);
            return $"The disk holds a repository with {count} restore point(s); the catalog lists them again.";
        }
        catch (RepositoryException e)
        {
            return $"The disk holds a repository that could not be opened here ({e.Message}); then run 'proxybackup catalog rebuild --config {configPath}'.";
        }
    }

    /// <summary>One setup: the mount point, the fstab it is recorded in, and the tools that do the work.</summary>
    internal sealed class StorageSetup(string mountPoint, string fstabPath)
    {
        public string FstabPath => fstabPath;

        public string Disk(string name, bool formatIfBlank)
        {
            var path = name.StartsWith('/') ? name : "/dev/" + name;
            var disk = BlockDisks.Describe(path);
            if (MountTable.At(mountPoint) is { } mounted)
            {
                if (mounted.Device != disk.Device) throw new CliException($"{mountPoint} already has {mounted.Source} mounted; unmount it first, or choose another --mount-point.");
                RecordDisk(disk);
                return $"{path} was already mounted at {mountPoint}.";
            }
            if (disk.MountedAt is { } elsewhere) throw new CliException($"{path} is mounted at {elsewhere}: it is in use, choose another disk.");
            if (disk.ReadOnly) throw new CliException($"{path} is read-only (a disk OpenNebula attached for a backup job?): the repository needs a writable persistent datablock.");
            if (disk.Partitioned) throw new CliException($"{path} has partitions ({disk.Content}): ProxyBackup uses a whole, blank disk and formats nothing else. Choose another disk, or wipe this one yourself if it is really unused.");
            // Every refusal comes before the format: a refused setup has changed nothing.
            EmptyMountPoint();
            string action;
            if (disk.FileSystem is "ext4" or "xfs")
                action = $"{path} holds an {disk.FileSystem} file system{(disk.FsLabel is { Length: > 0 } l ? $" labelled {l}" : "")}: kept as it is, not formatted.";
            else if (disk.FileSystem is not null || !disk.Blank)
                throw new CliException($"{path} is not blank ({disk.Content}): ProxyBackup formats only blank disks, and uses ext4 or xfs as they are. Nothing was changed.");
            else if (!formatIfBlank)
                throw new CliException($"{path} is blank: give --format to format it with ext4 (with PROXYBACKUP_REPOSITORY_FORMAT=YES in the context at first boot). Nothing was changed.");
            else
            {
                Tool.Run("mkfs.ext4", "-q", "-L", Label, "-m", "1", path);
                action = $"{path} was blank: formatted with ext4 (label {Label}).";
                disk = BlockDisks.Describe(path);
            }
            Tool.Run("mount", "-t", disk.FileSystem!, path, mountPoint);
            RecordDisk(disk);
            return action + $" Mounted at {mountPoint}.";
        }

        public string Nfs(string export)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(export, @"^[A-Za-z0-9.:\[\]-]+:/\S*$"))
                throw new CliException($"--nfs {export}: an export as host:/path.");
            var mounted = MountTable.At(mountPoint);
            if (mounted is not null && mounted.Source != export)
                throw new CliException($"{mountPoint} already has {mounted.Source} mounted; unmount it first, or choose another --mount-point.");
            const string options = "hard,_netdev,nofail";
            if (mounted is null)
            {
                EmptyMountPoint();
                Tool.Run("mount", "-t", "nfs", "-o", "hard", export, mountPoint);
            }
            FstabFile.Record(fstabPath, mountPoint, $"{export} {FstabFile.Escape(mountPoint)} nfs {options} 0 0");
            return $"{export} mounted at {mountPoint}.";
        }

        /// <summary>Mounting over files would hide them: a repository written to the root disk meanwhile is moved by the operator, not buried.</summary>
        private void EmptyMountPoint()
        {
            Directory.CreateDirectory(mountPoint);
            if (Directory.EnumerateFileSystemEntries(mountPoint).Any())
                throw new CliException($"{mountPoint} holds files (a repository written to the root disk?): move them away first, then mount; nothing was changed.");
        }

        private void RecordDisk(BlockDisks.Disk disk)
        {
            var uuid = disk.Uuid ?? throw new CliException($"{disk.Path} has no file system UUID to mount it by.");
            // nofail: a missing disk must not stop the appliance from booting; the mount point check refuses the repository instead.
            FstabFile.Record(fstabPath, mountPoint, $"UUID={uuid} {FstabFile.Escape(mountPoint)} {disk.FileSystem} defaults,nofail,x-systemd.device-timeout=30s 0 2");
        }
    }

    /// <summary>fstab(5): one line per mount; the line for our mount point is replaced, every other line kept as it was.</summary>
    internal static class FstabFile
    {
        public sealed record Entry(string MountPoint, string Line);

        public static IReadOnlyList<Entry> Read(string path) =>
            !File.Exists(path) ? [] : [.. File.ReadAllLines(path)
                .Select(l => (Line: l, Fields: l.Split([' ', '\t'], StringSplitOptions.RemoveEmptyEntries)))
                .Where(l => l.Fields.Length >= 2 && !l.Fields[0].StartsWith('#'))
                .Select(l => new Entry(Unescape(l.Fields[1]), l.Line))];

        public static void Record(string path, string mountPoint, string line)
        {
            var lines = File.Exists(path) ? File.ReadAllLines(path).ToList() : [];
            var ours = Read(path).Where(e => e.MountPoint == mountPoint).Select(e => e.Line).ToHashSet(StringComparer.Ordinal);
            lines.RemoveAll(ours.Contains);
            lines.Add(line);
            // Written whole and synced before the rename (a crash never leaves an empty fstab), onto the
            // file a symlink names, with the mode the file had.
            var real = new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? Path.GetFullPath(path);
            var mode = File.Exists(real) ? File.GetUnixFileMode(real) : UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead;
            AtomicFile.Write(Path.GetDirectoryName(real)!, real, System.Text.Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n"), Durability.Immediate, mode: mode);
            // systemd turns fstab into mount units: tell it the file changed (when it runs this system).
            if (path == "/etc/fstab" && Directory.Exists("/run/systemd/system")) Tool.TryRun("systemctl", "daemon-reload");
        }

        /// <summary>fstab writes a space in a path as \040.</summary>
        public static string Escape(string path) => path.Replace(" ", "\\040", StringComparison.Ordinal).Replace("\t", "\\011", StringComparison.Ordinal);

        private static string Unescape(string field) => field.Replace("\\040", " ", StringComparison.Ordinal).Replace("\\011", "\t", StringComparison.Ordinal);
    }

    /// <summary>The whole disks of this VM, as the kernel (/sys/block) and blkid's low-level probe see them.</summary>
    internal static class BlockDisks
    {
        public sealed record Disk(string Path, long Size, string Device, bool ReadOnly, bool Partitioned, string? FileSystem, string? Uuid, string? FsLabel, bool Blank, string? MountedAt)
        {
            public string Content => Partitioned ? "partition table" : FileSystem is not null ? $"{FileSystem}{(FsLabel is { Length: > 0 } l ? $", label {l}" : "")}" : Blank ? "blank" : "unknown data";
        }

        /// <summary>Disks that could hold the repository: writable, whole, unpartitioned, not mounted, not loop or optical devices.</summary>
        public static IReadOnlyList<Disk> Candidates()
        {
            if (!Directory.Exists("/sys/block")) return [];
            return [.. Directory.GetDirectories("/sys/block").Select(System.IO.Path.GetFileName).OfType<string>()
                .Where(n => !n.StartsWith("loop", StringComparison.Ordinal) && !n.StartsWith("ram", StringComparison.Ordinal) && !n.StartsWith("sr", StringComparison.Ordinal)
                    && !n.StartsWith("dm-", StringComparison.Ordinal) && !n.StartsWith("zram", StringComparison.Ordinal) && !n.StartsWith("nbd", StringComparison.Ordinal))
                .Where(n => File.Exists($"/dev/{n}"))
                .Select(DescribeIfReadable).OfType<Disk>()
                .Where(d => !d.ReadOnly && !d.Partitioned && d.MountedAt is null && d.Size > 0)];
        }

        /// <summary>A disk this process may not open (a container's, a device cgroup's) is no candidate.</summary>
        private static Disk? DescribeIfReadable(string name)
        {
            try { return Describe($"/dev/{name}"); }
            catch (Exception e) when (e is UnauthorizedAccessException or IOException or CliException) { return null; }
        }

        public static Disk Describe(string path)
        {
            if (!File.Exists(path) && !Directory.Exists(path)) throw new CliException($"{path} does not exist ('proxybackup storage show' lists the disks).");
            var name = System.IO.Path.GetFileName(new FileInfo(path).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? path);
            var sys = $"/sys/class/block/{name}";
            if (!Directory.Exists(sys)) throw new CliException($"{path} is not a block device.");
            var device = File.ReadAllText($"{sys}/dev").Trim();
            var size = long.Parse(File.ReadAllText($"{sys}/size").Trim(), System.Globalization.CultureInfo.InvariantCulture) * 512;
            var readOnly = File.ReadAllText($"{sys}/ro").Trim() == "1";
            var partitions = Directory.GetDirectories(sys, name + "*");
            var probe = Probe(path);
            var devices = partitions.Select(d => File.ReadAllText($"{d}/dev").Trim()).Append(device).ToHashSet(StringComparer.Ordinal);
            var mountedAt = MountTable.Read().FirstOrDefault(m => devices.Contains(m.Device))?.MountPoint;
            return new Disk(path, size, device, readOnly, partitions.Length > 0 || probe.ContainsKey("PTTYPE"), probe.GetValueOrDefault("TYPE"), probe.GetValueOrDefault("UUID"),
                probe.GetValueOrDefault("LABEL"), probe.Count == 0 && StartsWithZeros(path), mountedAt);
        }

        /// <summary>blkid's low-level probe (-p: no cache) of signatures: file systems, LVM, swap, RAID, partition tables.</summary>
        private static Dictionary<string, string> Probe(string path)
        {
            var (exit, output) = Tool.Capture("blkid", "-p", "-o", "export", path);
            // Exit 2: nothing was found on the device.
            if (exit == 2) return [];
            if (exit != 0) throw new CliException($"blkid could not probe {path} (exit {exit}): {output.Trim()}");
            return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('=', 2)).Where(kv => kv.Length == 2)
                .ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
        }

        /// <summary>A blank disk reads zeros: no signature is not enough when data without one sits at its start.</summary>
        private static bool StartsWithZeros(string path)
        {
            var buffer = new byte[1 << 20];
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            var read = stream.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
            return !buffer.AsSpan(0, read).ContainsAnyExcept((byte)0);
        }
    }

    /// <summary>The system tools storage needs (util-linux, e2fsprogs): their own message becomes the error.</summary>
    private static class Tool
    {
        public static (int Exit, string Output) Capture(string file, params string[] args)
        {
            var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
            foreach (var a in args) psi.ArgumentList.Add(a);
            Process process;
            try { process = Process.Start(psi) ?? throw new CliException($"{file} could not be started."); }
            catch (System.ComponentModel.Win32Exception) { throw new CliException($"{file} is not installed (scripts/install-deps installs util-linux and e2fsprogs)."); }
            using var _ = process;
            // No questions: a tool that would ask (mkfs over a signature) reads end of input and stops.
            process.StandardInput.Close();
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, stdout + stderr.Result);
        }

        public static void Run(string file, params string[] args)
        {
            var (exit, output) = Capture(file, args);
            if (exit != 0) throw new CliException($"{file} {string.Join(' ', args)} failed (exit {exit}): {output.Trim().ReplaceLineEndings(" ")}");
        }

        public static void TryRun(string file, params string[] args)
        {
            try { Capture(file, args); }
            catch (CliException) { }
        }
    }
}
