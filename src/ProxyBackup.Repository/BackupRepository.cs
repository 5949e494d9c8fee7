using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace ProxyBackup.Repository;

/// <summary>
/// A repository directory (docs/repository-format.md): config, keys, content-addressed chunks and
/// restore points. Knows nothing of OpenNebula: it stores disks and opaque metadata per source.
/// </summary>
public sealed partial class BackupRepository
{

    /// <summary>
    /// The time that decides lock staleness, garbage collection's grace and restore point times;
    /// tests set it instead of back-dating files.
    /// </summary>
    public TimeProvider Clock { get; set; } = TimeProvider.System;

    /// <summary>How long retention, forget and GC wait for the backups and restores under way before they give up.</summary>
    public TimeSpan ExclusiveLockWait { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a backup, restore or verify waits for a retention, forget or GC under way before it gives up.</summary>
    public TimeSpan SharedLockWait { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Which SHA-256 names chunks here, and why (the lanes' self-test): one line for the daemon's log.</summary>
    public static string HashingStatus => Sha256Lanes.Status;

    /// <summary>The budget the chunk buffers of this object's backups, restores and verifies share.</summary>
    public ChunkMemory Memory { get; } = new();

    /// <summary>What one backup needs from <see cref="Memory"/> at the least; a budget for N jobs at once holds N of these.</summary>
    public long BackupMemoryAtFewest => DiskBackup.FewestBytes(Tuning, Config.ChunkSize, Keys is not null);

    /// <summary>Workers, read-ahead and batching of this object's pipelines; validated when set.</summary>
    public PipelineTuning Tuning
    {
        get;
        set => field = value.Validated();
    } = PipelineTuning.Default;

    private BackupRepository(string path, RepositoryConfig config, MasterKeys? keys, IChunkStore? chunks, IPointStore? points)
    {
        Root = path;
        Config = config;
        Keys = keys;
        Chunks = chunks ?? new LocalChunkStore(path, StoredChunks.FileCapacity(config.ChunkSize));
        Points = points ?? new LocalPointStore(path);
        StoredPoints = new StoredPoints(Points, config.ChunkSize, keys);
    }

    public string Root { get; }
    public RepositoryConfig Config { get; }
    internal MasterKeys? Keys { get; }

    internal string TmpDirectory => Path.Combine(Root, "tmp");
    internal string LocksDirectory => Path.Combine(Root, "locks");

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,127}$")]
    private static partial Regex SourceName();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex ItemName();

    public static BackupRepository Create(string path, RepositoryCreateOptions options, IChunkStore? chunks = null) => Create(path, options, chunks, null);

    /// <summary>A repository whose restore points are in <paramref name="points"/> (the tests' in-memory store).</summary>
    internal static BackupRepository Create(string path, RepositoryCreateOptions options, IChunkStore? chunks, IPointStore? points)
    {
        path = Path.GetFullPath(path);
        RequireMounted(options.MountPoint);
        if (File.Exists(Path.Combine(path, "config")))
            throw new RepositoryException($"{path} already holds a repository; open it instead.");
        // The root of a file system of its own holds the file system's lost+found: empty all the same.
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any(e => Path.GetFileName(e) != "lost+found"))
            throw new RepositoryException($"{path} is not empty; create the repository in an empty or new directory.");
        var config = new RepositoryConfig
        {
            Id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
            ChunkSize = options.ChunkSize,
            Compression = new CompressionConfig { Level = options.CompressionLevel },
            Encryption = options.Key is null ? null : new EncryptionConfig(),
            Created = DateTimeOffset.UtcNow,
        };
        config.Validate(path);
        foreach (var d in new[] { "", "chunks", "points", "locks", "tmp", "keys" }) OwnerOnly.CreateDirectory(Path.Combine(path, d));
        if (chunks is null) LocalChunkStore.CreateLayout(path);
        MasterKeys? keys = null;
        if (options.Key is { } key)
        {
            keys = MasterKeys.Generate();
            AtomicFile.Write(Path.Combine(path, "tmp"), Path.Combine(path, "keys", Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))), keys.Wrap(key), Durability.Immediate);
        }
        AtomicFile.Write(Path.Combine(path, "tmp"), Path.Combine(path, "config"), JsonSerializer.SerializeToUtf8Bytes(config, RepositoryJson.Indented.RepositoryConfig), Durability.Immediate);
        return new BackupRepository(path, config, keys, chunks, points) { MountPoint = options.MountPoint };
    }

    /// <summary>
    /// Opens the repository at <paramref name="path"/>; its chunks in <paramref name="chunks"/> when given, else in its chunks/ directory.
    /// With <paramref name="mountPoint"/>, nothing is read or written while no file system is mounted there.
    /// </summary>
    public static BackupRepository Open(string path, RepositoryKey? key, IChunkStore? chunks = null, string? mountPoint = null)
    {
        path = Path.GetFullPath(path);
        RequireMounted(mountPoint);
        var configPath = Path.Combine(path, "config");
        if (!File.Exists(configPath))
            throw new RepositoryException(Directory.Exists(path)
                ? $"{path} is not a ProxyBackup repository (no config file); create one with 'repository init'."
                : $"Repository {path} does not exist (is the disk or NFS share mounted?).");
        RepositoryConfig config;
        try
        {
            config = JsonSerializer.Deserialize(File.ReadAllBytes(configPath), RepositoryJson.Default.RepositoryConfig) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new CorruptDataException($"{configPath} is damaged: {e.Message}");
        }
        config.Validate(path);
        MasterKeys? keys = null;
        var keysDirectory = Path.Combine(path, "keys");
        var keyFiles = Directory.Exists(keysDirectory) ? Directory.GetFiles(keysDirectory) : [];
        if (config.Encrypted)
        {
            if (key is null) throw new WrongKeyException($"Repository {path} is encrypted: give its passphrase or key file.");
            if (keyFiles.Length == 0)
                throw new CorruptDataException($"Repository {path} is encrypted but has no key files in keys/: put them back from your copy (docs/operations.md, \"The repository\").");
            keys = MasterKeys.Unwrap(keyFiles.Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))), key);
        }
        else if (keyFiles.Length > 0)
        {
            // Read as plain, an encrypted repository would fail on every file, and a backup would add
            // plaintext to it: a config without "encryption" beside key files was edited or damaged.
            throw new CorruptDataException($"{configPath} says the repository is not encrypted, but it has key files in keys/: the config was edited or damaged. Put back its \"encryption\" entry (docs/repository-format.md, \"config\").");
        }
        return new BackupRepository(path, config, keys, chunks, null) { ReadOnly = !PrepareForWriting(path), MountPoint = mountPoint };
    }

    /// <summary>
    /// Where the repository's own disk or NFS share must be mounted (docs/operations.md, "Repository
    /// storage"): checked when it opens and before every locked operation, so that an unmounted disk
    /// never lets a backup fill the file system below the mount point.
    /// </summary>
    public string? MountPoint { get; private init; }

    internal static void RequireMounted(string? mountPoint)
    {
        if (mountPoint is not null && MountTable.At(mountPoint) is null)
            throw new RepositoryUnmountedException(mountPoint);
    }

    /// <summary>
    /// Creates the working directories and checks that a file can be written: false on a read-only
    /// copy (a read-only mount, a snapshot of the backup disk), which can still be listed, verified
    /// and restored from, without a lock (docs/repository-format.md, "Locks").
    /// </summary>
    private static bool PrepareForWriting(string path)
    {
        try
        {
            foreach (var d in new[] { "chunks", "points", "locks", "tmp" }) OwnerOnly.CreateDirectory(Path.Combine(path, d));
            var probe = Path.Combine(path, "tmp", $"probe-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}");
            using (new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.DeleteOnClose)) { }
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    /// <summary>The repository cannot be written here: reads go on without a lock, writes are refused.</summary>
    public bool ReadOnly { get; private init; }

    /// <summary>Adds another passphrase or key file that opens this (encrypted) repository.</summary>
    public void AddKey(RepositoryKey key)
    {
        if (Keys is null) throw new RepositoryException("This repository is not encrypted.");
        AtomicFile.Write(TmpDirectory, Path.Combine(Root, "keys", Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))), Keys.Wrap(key), Durability.Immediate);
    }

    public static void CheckSourceName(string source)
    {
        if (!SourceName().IsMatch(source)) throw new ArgumentException($"'{source}' is not a valid source name ([a-z0-9._-], starting with a letter or digit).");
    }

    public static void CheckItemName(string name)
    {
        if (!ItemName().IsMatch(name)) throw new ArgumentException($"'{name}' is not a valid disk or metadata name ([A-Za-z0-9._-]).");
    }

    internal static string NewRestorePointId(DateTimeOffset time) =>
        $"{time.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}-{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}";

    // ---- chunks and restore points -----------------------------------------------------------

    /// <summary>Where the chunk files are; the pipelines reach them only through it.</summary>
    public IChunkStore Chunks { get; }

    /// <summary>Where the restore points are; everything reaches their files through it (a point exists while its index does).</summary>
    internal IPointStore Points { get; }

    /// <summary>The chunks as a pipeline takes them, with this repository's format, keys and clock now.</summary>
    internal StoredChunks StoredChunks => new(Chunks, Config.ChunkSize, Config.Compression.Level, Keys, Clock);

    /// <summary>The restore points as a pipeline takes them, their files opened with this repository's keys.</summary>
    internal StoredPoints StoredPoints { get; }

    /// <summary>The readable restore points, oldest first. A point whose index is damaged is left out (see <see cref="ScanRestorePoints"/>), one forgotten meanwhile too.</summary>
    public IReadOnlyList<RestorePoint> ListRestorePoints(string? source = null) => ScanRestorePoints(source).Points;

    /// <inheritdoc cref="StoredPoints.Scan"/>
    public RestorePointScan ScanRestorePoints(string? source = null) => StoredPoints.Scan(source);

    /// <inheritdoc cref="StoredPoints.LoadIndex"/>
    public RestorePoint LoadIndex(string source, string id) => StoredPoints.LoadIndex(source, id);

    /// <inheritdoc cref="StoredPoints.LoadManifest"/>
    public Manifest LoadManifest(RestorePoint point, string disk) => StoredPoints.LoadManifest(point, disk);

    /// <inheritdoc cref="StoredPoints.LoadMetadata"/>
    public byte[] LoadMetadata(RestorePoint point, string name) => StoredPoints.LoadMetadata(point, name);
}

/// <summary>The repository's disk or share is not mounted: retry once it is (the daemon does, at every scheduling step).</summary>
public sealed class RepositoryUnmountedException(string mountPoint)
    : RepositoryException($"The repository disk is not mounted at {mountPoint}: nothing is read or written there until it is, so that backups never fill the disk below. " +
        $"Mount it ('mount {mountPoint}'; 'proxybackup storage show' tells what is configured).");

/// <summary>The repository's file system is full. Nothing half-written became visible.</summary>
public sealed class RepositoryFullException(string root, Exception inner)
    : RepositoryException($"The repository's disk is full ({root}): no restore point was written. Free space (apply retention and run gc) or grow the disk, then retry.", inner);
