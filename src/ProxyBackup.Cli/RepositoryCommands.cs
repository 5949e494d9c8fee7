using ProxyBackup.ObjectStorage;
using System.CommandLine;
using ProxyBackup.Repository;
using ProxyBackup.Engine;
using ProxyBackup.Contracts;

namespace ProxyBackup.Cli;

/// <summary>`proxybackup repository ...`: the repository on its own, without the cloud (files and block devices).</summary>
internal static class RepositoryCommands
{
    internal static readonly Option<string> Repo = new("--repo", "-r")
    {
        Description = "Repository directory, or S3 location s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX] with the key in $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY (default: $PROXYBACKUP_REPOSITORY).",
        DefaultValueFactory = _ => Environment.GetEnvironmentVariable("PROXYBACKUP_REPOSITORY") ?? "",
    };
    internal static readonly Option<string?> PassphraseFile = new("--passphrase-file") { Description = "File holding the repository passphrase (or set $PROXYBACKUP_PASSPHRASE)." };
    internal static readonly Option<string?> KeyFile = new("--key-file") { Description = "Key file (at least 32 random bytes) instead of a passphrase." };
    private static readonly Option<bool> Json = new("--json") { Description = "Print the result as JSON." };

    public static Command Build()
    {
        var cmd = new Command("repository", "Work on a backup repository directly: init, backup files or devices, list, restore, export, verify, forget, gc, stats, copy, name-cloud.");
        cmd.Aliases.Add("repo");
        foreach (var o in new Option[] { Repo, PassphraseFile, KeyFile }) { o.Recursive = true; cmd.Options.Add(o); }
        cmd.Options.Add(DaemonCommand.ConfigFile);
        cmd.Subcommands.Add(Init());
        cmd.Subcommands.Add(Backup());
        cmd.Subcommands.Add(List());
        cmd.Subcommands.Add(Restore());
        cmd.Subcommands.Add(Export());
        cmd.Subcommands.Add(Verify());
        cmd.Subcommands.Add(Forget());
        cmd.Subcommands.Add(Gc());
        cmd.Subcommands.Add(Stats());
        cmd.Subcommands.Add(Copy());
        cmd.Subcommands.Add(NameCloud());
        return cmd;
    }

    private static string RepoPath(ParseResult p) =>
        p.GetValue(Repo) is { Length: > 0 } r ? r : throw new CliException("Name the repository with --repo PATH or $PROXYBACKUP_REPOSITORY.");

    private static RepositoryKey? Key(ParseResult p)
    {
        if (p.GetValue(KeyFile) is { } kf)
        {
            if (File.Exists(kf)) SecretFile.CheckPrivate(kf);
            return RepositoryKey.FromKeyFile(kf);
        }
        if (p.GetValue(PassphraseFile) is { } pf) return PassphraseIn(pf);
        return Environment.GetEnvironmentVariable("PROXYBACKUP_PASSPHRASE") is { Length: > 0 } env ? RepositoryKey.FromPassphrase(env) : null;
    }

    /// <summary>The key of the passphrase in a file (its owner's only), the line end trimmed.</summary>
    private static RepositoryKey PassphraseIn(string file) =>
        File.Exists(file) ? RepositoryKey.FromPassphrase(SecretFile.ReadAllText(file).TrimEnd('\r', '\n')) : throw new CliException($"Passphrase file {file} does not exist.");

    internal static BackupRepository Open(ParseResult p)
    {
        // Without --repo, the appliance's configured repository (and its passphrase) is used.
        if (p.GetResult(Repo) is not { Implicit: false } && Environment.GetEnvironmentVariable("PROXYBACKUP_REPOSITORY") is null && File.Exists(p.GetValue(DaemonCommand.ConfigFile)!))
        {
            var config = AppConfig.Load(p.GetValue(DaemonCommand.ConfigFile)!);
            var secrets = File.Exists(config.SecretsFile) ? AppSecrets.Load(config.SecretsFile!) : new AppSecrets();
            return config.Repository.Open(secrets, Key(p));
        }
        var path = RepoPath(p);
        return BackupRepository.Open(RepositoryLocation.Storage(path), Key(p), mountPoint: ConfiguredMountFor(p, path));
    }

    /// <summary>A repository named by path on the appliance's repository mount waits for that disk like the configured one (docs/operations.md, "Repository storage").</summary>
    private static string? ConfiguredMountFor(ParseResult p, string path) =>
        !S3Location.IsS3(path) && File.Exists(p.GetValue(DaemonCommand.ConfigFile)!) ? AppConfig.Load(p.GetValue(DaemonCommand.ConfigFile)!).Repository.MountFor(path) : null;

    /// <summary>The repository named (--repo, $PROXYBACKUP_REPOSITORY) or configured, or null when there is none.</summary>
    internal static BackupRepository? OpenIfNamed(ParseResult p) =>
        p.GetValue(Repo) is { Length: > 0 } || File.Exists(p.GetValue(DaemonCommand.ConfigFile)!) ? Open(p) : null;

    private static RestorePoint FindPoint(BackupRepository repo, string source, string point) =>
        point == "latest"
            ? repo.Latest(source) ?? throw new CliException($"Source '{source}' has no restore point in {repo.Root}.")
            : repo.LoadIndex(source, point);

    private static Command Init()
    {
        var chunk = new Option<string>("--chunk-size") { DefaultValueFactory = _ => "4M", Description = "Chunk size, a power of two from 64K to 64M. Fixed for the repository's life." };
        var level = new Option<int>("--compression-level") { DefaultValueFactory = _ => 1, Description = "zstd level (1 fastest; 3 saves a few percent more)." };
        var encrypt = new Option<bool>("--encrypt") { Description = "Encrypt with AES-256-GCM; needs --passphrase-file, --key-file or $PROXYBACKUP_PASSPHRASE." };
        var c = new Command("init", "Create a repository in an empty directory.") { chunk, level, encrypt };
        c.SetAction(p =>
        {
            var key = Key(p);
            if (p.GetValue(encrypt) && key is null) throw new CliException("--encrypt needs a passphrase (--passphrase-file or $PROXYBACKUP_PASSPHRASE) or --key-file.");
            var size = CliFormat.ParseSize(p.GetValue(chunk)!);
            if (size > int.MaxValue) throw new CliException("--chunk-size is too large (64M at most).");
            var path = RepoPath(p);
            var repo = BackupRepository.Create(RepositoryLocation.Storage(path), new RepositoryCreateOptions { ChunkSize = (int)size, CompressionLevel = p.GetValue(level), Key = p.GetValue(encrypt) ? key : null, MountPoint = ConfiguredMountFor(p, path) });
            Console.WriteLine($"Created repository {repo.Root} (id {repo.Config.Id}, chunks {CliFormat.Bytes(repo.Config.ChunkSize)}, {(repo.Config.Encrypted ? "encrypted" : "not encrypted")}).");
            return 0;
        });
        return c;
    }

    private static Command Backup()
    {
        var source = new Option<string>("--source") { Required = true, Description = "What is backed up, e.g. vm-42 ([a-z0-9._-])." };
        var disks = new Option<string[]>("--disk") { Required = true, Description = "NAME=PATH of a file or block device; repeatable.", AllowMultipleArgumentsPerToken = false };
        var meta = new Option<string[]>("--metadata") { Description = "NAME=FILE stored beside the disks; repeatable." };
        var full = new Option<bool>("--full") { Description = "Do not compare with the previous restore point (every chunk is hashed either way)." };
        var c = new Command("backup", "Back up files or block devices as one restore point (incremental against the source's latest).") { source, disks, meta, full, Json };
        c.SetAction(async (p, ct) =>
        {
            var repo = Open(p);
            var src = p.GetValue(source)!;
            var parent = p.GetValue(full) ? null : repo.Latest(src);
            using var writer = repo.StartRestorePoint(src, parent, new Dictionary<string, string> { ["kind"] = parent is null ? "full" : "incremental" });
            foreach (var m in p.GetValue(meta) ?? [])
            {
                var (name, file) = Pair(m, "--metadata");
                writer.AddMetadata(name, File.ReadAllBytes(file));
            }
            var stats = new Dictionary<string, DiskBackupStats>();
            foreach (var d in p.GetValue(disks)!)
            {
                var (name, path) = Pair(d, "--disk");
                stats[name] = await ProgressDisplay.RunAsync($"backup {name}", progress => writer.AddDiskAsync(name, path, progress, ct)).ConfigureAwait(false);
            }
            var index = writer.Commit();
            if (p.GetValue(Json)) CliFormat.PrintJson(index);
            else
            {
                Console.WriteLine($"Restore point {index.Source}/{index.Id} ({(parent is null ? "full" : $"incremental on {parent.Id}")})");
                foreach (var (name, s) in stats)
                    Console.WriteLine($"  disk {name}: read {CliFormat.Bytes(s.Read)}, zero {CliFormat.Bytes(s.Zero)}, changed {CliFormat.Bytes(s.Changed)}, new {CliFormat.Bytes(s.NewStored)} stored in {s.NewChunks} chunks, {s.Seconds:0.0} s ({s.Read / Math.Max(s.Seconds, 1e-3) / 1e6:0} MB/s)");
            }
            return 0;
        });
        return c;
    }

    private static (string Name, string Value) Pair(string text, string option)
    {
        var i = text.IndexOf('=', StringComparison.Ordinal);
        if (i <= 0 || i == text.Length - 1) throw new CliException($"{option} takes NAME=PATH, got '{text}'.");
        return (text[..i], text[(i + 1)..]);
    }

    private static Command List()
    {
        var source = new Option<string?>("--source") { Description = "Only this source." };
        var c = new Command("list", "List restore points, oldest first.") { source, Json };
        c.SetAction(p =>
        {
            var points = ReadablePoints(Open(p), p.GetValue(source));
            if (p.GetValue(Json)) { CliFormat.PrintJson(points); return 0; }
            foreach (var pt in points)
                Console.WriteLine($"{pt.Source,-12} {pt.Id}  {pt.Time:yyyy-MM-dd HH:mm:ss}Z  {pt.Tags.GetValueOrDefault("kind", ""),-11}  {string.Join(", ", pt.Disks.Select(d => $"disk {d.Disk} {CliFormat.Bytes(d.Size)}"))}");
            if (points.Count == 0) Console.WriteLine("No restore points.");
            return 0;
        });
        return c;
    }

    private static readonly Option<string> Source = new("--source") { Required = true };
    private static readonly Option<string> Point = new("--point") { DefaultValueFactory = _ => "latest", Description = "Restore point id, or 'latest'." };
    private static readonly Option<string> Disk = new("--disk") { Required = true };
    private static readonly Option<string> To = new("--to") { Required = true, Description = "Target file or block device." };

    private static Command Restore()
    {
        var zeroed = new Option<bool>("--target-zeroed") { Description = "The target device reads as zeros (a fresh image): skip writing zero chunks." };
        var c = new Command("restore", "Write a disk of a restore point to a new file (sparse) or a block device; every chunk is verified.") { Source, Point, Disk, To, zeroed };
        c.SetAction(async (p, ct) =>
        {
            var repo = Open(p);
            var point = FindPoint(repo, p.GetValue(Source)!, p.GetValue(Point)!);
            var stats = await ProgressDisplay.RunAsync("restore", progress =>
                repo.RestoreDiskAsync(point, p.GetValue(Disk)!, p.GetValue(To)!, new RestoreOptions { TargetIsZeroed = p.GetValue(zeroed), RefuseExistingFile = true }, progress, ct)).ConfigureAwait(false);
            Console.WriteLine($"Restored {point.Source}/{point.Id} disk {p.GetValue(Disk)} to {p.GetValue(To)}: {CliFormat.Bytes(stats.Bytes)} in {stats.Seconds:0.0} s ({stats.Bytes / Math.Max(stats.Seconds, 1e-3) / 1e6:0} MB/s).");
            return 0;
        });
        return c;
    }

    private static Command Export()
    {
        var format = new Option<DiskFormat>("--format") { DefaultValueFactory = _ => DiskFormat.Raw, Description = "raw (sparse file) or qcow2 (needs qemu-img)." };
        var c = new Command("export", "Export a disk of a restore point as a raw or qcow2 file.") { Source, Point, Disk, To, format };
        c.SetAction(async (p, ct) =>
        {
            var repo = Open(p);
            var point = FindPoint(repo, p.GetValue(Source)!, p.GetValue(Point)!);
            await ProgressDisplay.RunAsync("export", async progress => { await repo.ExportAsync(point, p.GetValue(Disk)!, p.GetValue(To)!, p.GetValue(format), progress, ct).ConfigureAwait(false); return 0; }).ConfigureAwait(false);
            Console.WriteLine($"Exported {point.Source}/{point.Id} disk {p.GetValue(Disk)} to {p.GetValue(To)} ({p.GetValue(format).ToString().ToLowerInvariant()}).");
            return 0;
        });
        return c;
    }

    private static Command Verify()
    {
        var readData = new Option<bool>("--read-data") { Description = "Decrypt, decompress and hash every chunk (slow); otherwise check that every chunk exists." };
        var subsetOpt = new Option<string?>("--read-data-subset") { Description = "Read only part n of N of the chunks (e.g. 3/7: one seventh; parts 1/7 to 7/7 on seven days read everything); check the others exist." };
        var c = new Command("verify", "Check that every restore point can be restored; names the damaged ones.") { readData, subsetOpt, Json };
        c.SetAction(async (p, ct) =>
        {
            VerifySubset? subset;
            try { subset = p.GetValue(subsetOpt) is { } text ? VerifySubset.Parse(text) : null; }
            catch (ArgumentException e) { throw new CliException(e.Message); }
            var repo = Open(p);
            var read = p.GetValue(readData) || subset is not null;
            var report = await ProgressDisplay.RunAsync("verify", progress => repo.VerifyAsync(read, progress, ct, subset)).ConfigureAwait(false);
            if (p.GetValue(Json)) CliFormat.PrintJson(report);
            else
            {
                Console.WriteLine($"Checked {report.RestorePointsChecked} restore points, {report.ChunksChecked} chunks: {report.ChunksRead} read{(subset is null ? "" : $" (part {subset})")}, the others checked to exist.");
                foreach (var (point, reasons) in report.DamagedRestorePoints)
                {
                    Console.WriteLine($"DAMAGED {point}");
                    foreach (var r in reasons.Take(5)) Console.WriteLine($"  {r}");
                    if (reasons.Count > 5) Console.WriteLine($"  ... and {reasons.Count - 5} more");
                }
                if (report.Ok) Console.WriteLine("No damage found.");
            }
            return report.Ok ? 0 : 3;
        });
        return c;
    }

    private static Command Copy()
    {
        var from = new Option<string?>("--from") { Description = "The repository to copy from (default: --repo, $PROXYBACKUP_REPOSITORY or the configured one), opened with --passphrase-file or --key-file." };
        var to = new Option<string>("--to") { Description = "The repository to copy into: a directory or s3:..., made beforehand with 'repository init' and the same --chunk-size.", Required = true };
        var toPassphrase = new Option<string?>("--to-passphrase-file") { Description = "File holding the target's passphrase (or set $PROXYBACKUP_TO_PASSPHRASE)." };
        var source = new Option<string?>("--source") { Description = "Only this source's restore points (a VM's: vm-ID)." };
        var since = new Option<string?>("--since") { Description = "Only restore points from this time on (ISO 8601: 2026-12-01 or 2026-12-01T02:00Z)." };
        var c = new Command("copy", "Copy restore points into another repository (an off-site copy): only the chunks it lacks, re-encrypted with its key, checked on arrival; run again, it goes on where it stopped.")
            { from, to, toPassphrase, source, since, Json };
        c.SetAction(async (p, ct) =>
        {
            DateTimeOffset? sinceTime = null;
            if (p.GetValue(since) is { } text)
                sinceTime = DateTimeOffset.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var t)
                    ? t : throw new CliException($"--since '{text}' is not a time: write 2026-12-01 or 2026-12-01T02:00Z.");
            var origin = p.GetValue(from) is { Length: > 0 } fromPath
                ? BackupRepository.Open(RepositoryLocation.Storage(fromPath), Key(p), mountPoint: ConfiguredMountFor(p, fromPath))
                : Open(p);
            var toPath = p.GetValue(to)!;
            var targetKey = p.GetValue(toPassphrase) is { } file ? PassphraseIn(file)
                : Environment.GetEnvironmentVariable("PROXYBACKUP_TO_PASSPHRASE") is { Length: > 0 } env ? RepositoryKey.FromPassphrase(env) : null;
            BackupRepository target;
            try { target = BackupRepository.Open(RepositoryLocation.Storage(toPath), targetKey, mountPoint: ConfiguredMountFor(p, toPath)); }
            catch (WrongKeyException e) when (targetKey is null) { throw new CliException($"{e.Message} (for --to: --to-passphrase-file or $PROXYBACKUP_TO_PASSPHRASE)"); }
            var report = await ProgressDisplay.RunAsync("copy", progress => RepositoryCopy.RunAsync(origin, target, new CopySelection(p.GetValue(source), sinceTime), progress, ct)).ConfigureAwait(false);
            if (p.GetValue(Json)) CliFormat.PrintJson(report);
            else
            {
                Console.WriteLine($"Copied {report.Copied} restore point(s) to {target.Root} ({report.AlreadyThere} already there): {report.ChunksWritten} chunk(s), {CliFormat.Bytes(report.BytesWritten)} written and read back.");
                foreach (var failure in report.Failed) Console.WriteLine($"NOT COPIED {failure}");
            }
            // Damage in the origin is never copied: the points that have it are named, as verify names them.
            return report.Failed.Count == 0 ? 0 : 3;
        });
        return c;
    }

    private static Command NameCloud()
    {
        var cloud = new Argument<string>("cloud") { Description = "The cloud's name, as OpenNebula:Cloud will give it (a-z, 0-9, '-')." };
        var dry = new Option<bool>("--dry-run") { Description = "Only list the sources that would be renamed." };
        var c = new Command("name-cloud", "Give a cloud's name to the restore points made before it had one: every source vm-ID becomes CLOUD.vm-ID (small files only; no chunk is touched). " +
            "Run it once, before setting OpenNebula:Cloud, when a second cloud is to share the repository; then 'proxybackup catalog rebuild'.") { cloud, dry };
        c.SetAction(p =>
        {
            var name = p.GetValue(cloud)!;
            if (!VmSources.IsCloudName(name)) throw new CliException($"'{name}' is not a cloud name: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.");
            var repo = Open(p);
            var unnamed = new VmSources(null);
            var sources = repo.ListRestorePoints().Select(pt => pt.Source).Distinct().Where(src => unnamed.TryVmId(src, out _)).Order(StringComparer.Ordinal).ToList();
            var named = new VmSources(name);
            var moved = 0;
            foreach (var source in sources)
            {
                var target = named.Of(unnamed.TryVmId(source, out var vm) ? vm : -1);
                if (p.GetValue(dry)) { Console.WriteLine($"{source} -> {target}"); continue; }
                moved += repo.RenameSource(source, target);
            }
            Console.WriteLine(p.GetValue(dry)
                ? $"{sources.Count} source(s) would be renamed."
                : $"Renamed {sources.Count} source(s), {moved} restore point(s). Set OpenNebula:Cloud to {name}, then run 'proxybackup catalog rebuild'.");
            // A point whose index cannot be read cannot be moved: named, so that it is repaired or forgotten.
            foreach (var unreadable in repo.ScanRestorePoints().Unreadable.Where(u => unnamed.TryVmId(u.Source, out _)))
                Console.Error.WriteLine($"warning: {unreadable.Source}/{unreadable.Id} stays under its old name: {unreadable.Problem}");
            return 0;
        });
        return c;
    }

    private static Command Forget()
    {
        var last = new Option<int>("--keep-last");
        var daily = new Option<int>("--keep-daily");
        var weekly = new Option<int>("--keep-weekly");
        var monthly = new Option<int>("--keep-monthly");
        var yearly = new Option<int>("--keep-yearly");
        var within = new Option<string?>("--keep-within") { Description = "Keep everything newer than this (e.g. 7d)." };
        var source = new Option<string?>("--source");
        var dry = new Option<bool>("--dry-run") { Description = "Only list what would be removed." };
        var point = new Option<string?>("--point") { Description = "Remove this one restore point of --source (also one whose index is damaged) instead of applying a policy." };
        var c = new Command("forget", "Apply a retention policy: remove the restore points it does not keep (run gc afterwards to free space).") { last, daily, weekly, monthly, yearly, within, source, point, dry, Json };
        c.SetAction(p =>
        {
            if (p.GetValue(point) is { } id)
            {
                if (p.GetValue(source) is not { } pointSource) throw new CliException("--point needs --source: the restore point's source (e.g. vm-12).");
                Open(p).ForgetPoint(pointSource, id, p.GetValue(dry));
                Console.WriteLine($"{(p.GetValue(dry) ? "would remove" : "removed")} {pointSource}/{id}");
                return 0;
            }
            var policy = new RetentionPolicy
            {
                KeepLast = p.GetValue(last), KeepDaily = p.GetValue(daily), KeepWeekly = p.GetValue(weekly),
                KeepMonthly = p.GetValue(monthly), KeepYearly = p.GetValue(yearly),
                KeepWithin = p.GetValue(within) is { } w ? CliFormat.ParseDuration(w) : null,
            };
            if (policy.IsEmpty) throw new CliException("Give at least one --keep-* rule; forget without one would keep everything.");
            var plan = Open(p).ApplyRetention(policy, p.GetValue(source), p.GetValue(dry));
            if (p.GetValue(Json)) { CliFormat.PrintJson(plan.Select(d => new { d.Point.Source, d.Point.Id, d.Keep, d.Reasons })); return 0; }
            foreach (var d in plan)
                Console.WriteLine($"{(d.Keep ? "keep  " : p.GetValue(dry) ? "would remove" : "removed")} {d.Point.Source}/{d.Point.Id}  {string.Join(", ", d.Reasons)}");
            return 0;
        });
        return c;
    }

    /// <summary>The restore points a listing shows; those whose index cannot be read are named on stderr (<see cref="WarnUnreadable"/>).</summary>
    internal static IReadOnlyList<RestorePoint> ReadablePoints(BackupRepository repository, string? source)
    {
        var scan = repository.ScanRestorePoints(source);
        WarnUnreadable(scan.Unreadable);
        return scan.Points;
    }

    /// <summary>Restore points whose index cannot be read, on stderr: listings go on without them, the operator learns of them.</summary>
    internal static void WarnUnreadable(IEnumerable<UnreadableRestorePoint> unreadable)
    {
        foreach (var u in unreadable)
            Console.Error.WriteLine($"warning: restore point {u.Source}/{u.Id} cannot be read: {u.Problem} (run verify; remove it with: proxybackup repository forget --source {u.Source} --point {u.Id})");
    }

    private static Command Gc()
    {
        var grace = new Option<string>("--grace") { DefaultValueFactory = _ => "1h", Description = "Keep unreferenced chunks, incomplete restore points and temporary files younger than this (a margin for clocks that differ, e.g. on NFS)." };
        var c = new Command("gc", "Remove chunks no restore point references (runs beside backups and restores; one gc at a time).") { grace, Json };
        c.SetAction(p =>
        {
            var report = Open(p).CollectGarbage(CliFormat.ParseDuration(p.GetValue(grace)!));
            if (p.GetValue(Json)) CliFormat.PrintJson(report);
            else Console.WriteLine($"Removed {report.ChunksRemoved} chunks ({CliFormat.Bytes(report.BytesFreed)}); {report.ChunksReferenced} referenced; {report.ChunksInGrace} unreferenced kept for the grace period; {report.IncompletePointsRemoved} incomplete restore points and {report.TmpFilesRemoved} temporary files removed.");
            return 0;
        });
        return c;
    }

    private static Command Stats()
    {
        var c = new Command("stats", "Logical and stored size, dedup and compression ratios, per source.") { Json };
        c.SetAction(p =>
        {
            var s = Open(p).Stats();
            WarnUnreadable(s.Unreadable);
            if (p.GetValue(Json)) { CliFormat.PrintJson(new { s.RestorePoints, s.LogicalBytes, s.NonZeroBytes, s.UniqueChunks, s.UniqueChunkBytes, s.StoredBytes, s.DedupRatio, s.CompressionRatio, s.Sources, s.Unreadable }); return 0; }
            Console.WriteLine($"{s.RestorePoints} restore points, logical {CliFormat.Bytes(s.LogicalBytes)} (non-zero {CliFormat.Bytes(s.NonZeroBytes)}), stored {CliFormat.Bytes(s.StoredBytes)} in {s.UniqueChunks} chunks; dedup {s.DedupRatio:0.00}x, compression {s.CompressionRatio:0.00}x");
            foreach (var src in s.Sources)
                Console.WriteLine($"  {src.Source,-12} {src.RestorePoints,4} points  logical {CliFormat.Bytes(src.LogicalBytes),11}  stored {CliFormat.Bytes(src.StoredBytes),11}");
            return 0;
        });
        return c;
    }
}
