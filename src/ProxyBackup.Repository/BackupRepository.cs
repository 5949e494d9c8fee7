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

    private BackupRepository(IRepositoryStorage storage, RepositoryConfig config, MasterKeys? keys, IChunkStore? chunks, IPointStore? points)
    {
        Storage = storage;
        Config = config;
        Keys = keys;
        Chunks = chunks ?? storage.Chunks(StoredChunks.FileCapacity(config.ChunkSize));
        Points = points ?? storage.Points();
        StoredPoints = new StoredPoints(Points, config.ChunkSize, keys);
    }

    /// <summary>Where the repository is (a path, or an S3 location): for messages and the operator's eyes.</summary>
    public string Root => Storage.Location;

    /// <summary>Where its files and stores live.</summary>
    public IRepositoryStorage Storage { get; }
    public RepositoryConfig Config { get; }
    internal MasterKeys? Keys { get; }

    [GeneratedRegex("^[a-z0-9][a-z0-9._-]{0,127}$")]
    private static partial Regex SourceName();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex ItemName();

    public static BackupRepository Create(string path, RepositoryCreateOptions options, IChunkStore? chunks = null) => Create(new LocalRepositoryStorage(path), options, chunks, null);

    /// <summary>A new repository in <paramref name="storage"/>, which must be empty; its chunks and points in the stores given (the tests' in-memory stores), else in the storage's own.</summary>
    public static BackupRepository Create(IRepositoryStorage storage, RepositoryCreateOptions options, IChunkStore? chunks = null, IPointStore? points = null)
    {
        RequireMounted(options.MountPoint);
        if (!storage.IsEmpty())
            throw new RepositoryException(storage.Read("config") is not null
                ? $"{storage.Location} already holds a repository; open it instead."
                : $"{storage.Location} is not empty; create the repository in an empty or new place.");
        var config = new RepositoryConfig
        {
            Id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16)),
            ChunkSize = options.ChunkSize,
            Compression = new CompressionConfig { Level = options.CompressionLevel },
            Encryption = options.Key is null ? null : new EncryptionConfig(),
            Created = DateTimeOffset.UtcNow,
        };
        config.Validate(storage.Location);
        storage.CreateLayout();
        MasterKeys? keys = null;
        if (options.Key is { } key)
        {
            keys = MasterKeys.Generate();
            storage.Write(NewKeyName(), keys.Wrap(key));
        }
        // The config last: a storage holds a repository once it has its config.
        storage.Write("config", JsonSerializer.SerializeToUtf8Bytes(config, RepositoryJson.Indented.RepositoryConfig));
        return new BackupRepository(storage, config, keys, chunks, points) { MountPoint = options.MountPoint };
    }

    private static string NewKeyName() => $"keys/{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8))}";

    /// <summary>
    /// Opens the repository at <paramref name="path"/>; its chunks in <paramref name="chunks"/> when given, else in its chunks/ directory.
    /// With <paramref name="mountPoint"/>, nothing is read or written while no file system is mounted there.
    /// </summary>
    public static BackupRepository Open(string path, RepositoryKey? key, IChunkStore? chunks = null, string? mountPoint = null)
    {
        RequireMounted(mountPoint);
        return Open(new LocalRepositoryStorage(path), key, chunks, mountPoint);
    }

    /// <summary>Opens the repository in <paramref name="storage"/>.</summary>
    public static BackupRepository Open(IRepositoryStorage storage, RepositoryKey? key, IChunkStore? chunks = null, string? mountPoint = null)
    {
        RequireMounted(mountPoint);
        var location = storage.Location;
        var configBytes = storage.Read("config") ?? throw new RepositoryException(storage.NoRepositoryHere());
        var configPath = $"{location}/config";
        RepositoryConfig config;
        try
        {
            config = JsonSerializer.Deserialize(configBytes, RepositoryJson.Default.RepositoryConfig) ?? throw new JsonException("empty");
        }
        catch (JsonException e)
        {
            throw new CorruptDataException($"{configPath} is damaged: {e.Message}");
        }
        config.Validate(location);
        MasterKeys? keys = null;
        var keyFiles = storage.List("keys");
        if (config.Encrypted)
        {
            if (key is null) throw new WrongKeyException($"Repository {location} is encrypted: give its passphrase or key file.");
            if (keyFiles.Count == 0)
                throw new CorruptDataException($"Repository {location} is encrypted but has no key files in keys/: put them back from your copy (docs/operations.md, \"The repository\").");
            keys = MasterKeys.Unwrap(keyFiles.Select(f => (f, storage.Read($"keys/{f}") ?? [])), key);
        }
        else if (keyFiles.Count > 0)
        {
            // Read as plain, an encrypted repository would fail on every file, and a backup would add
            // plaintext to it: a config without "encryption" beside key files was edited or damaged.
            throw new CorruptDataException($"{configPath} says the repository is not encrypted, but it has key files in keys/: the config was edited or damaged. Put back its \"encryption\" entry (docs/repository-format.md, \"config\").");
        }
        return new BackupRepository(storage, config, keys, chunks, null) { ReadOnly = !storage.PrepareForWriting(), MountPoint = mountPoint };
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

    /// <summary>The repository cannot be written here: reads go on without a lock, writes are refused.</summary>
    public bool ReadOnly { get; private init; }

    /// <summary>Adds another passphrase or key file that opens this (encrypted) repository.</summary>
    public void AddKey(RepositoryKey key)
    {
        if (Keys is null) throw new RepositoryException("This repository is not encrypted.");
        Storage.Write(NewKeyName(), Keys.Wrap(key));
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
