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
    private static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

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
        Chunks = chunks ?? new LocalChunkStore(path, ChunkFileCapacity(config.ChunkSize));
        Points = points ?? new LocalPointStore(path);
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
        if (File.Exists(Path.Combine(path, "config")))
            throw new RepositoryException($"{path} already holds a repository; open it instead.");
        if (Directory.Exists(path) && Directory.EnumerateFileSystemEntries(path).Any())
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
        AtomicFile.Write(Path.Combine(path, "tmp"), Path.Combine(path, "config"), JsonSerializer.SerializeToUtf8Bytes(config, Json), Durability.Immediate);
        return new BackupRepository(path, config, keys, chunks, points);
    }

    /// <summary>Opens the repository at <paramref name="path"/>; its chunks in <paramref name="chunks"/> when given, else in its chunks/ directory.</summary>
    public static BackupRepository Open(string path, RepositoryKey? key, IChunkStore? chunks = null)
    {
        path = Path.GetFullPath(path);
        var configPath = Path.Combine(path, "config");
        if (!File.Exists(configPath))
            throw new RepositoryException(Directory.Exists(path)
                ? $"{path} is not a ProxyBackup repository (no config file); create one with 'repository init'."
                : $"Repository {path} does not exist (is the disk or NFS share mounted?).");
        RepositoryConfig config;
        try
        {
            config = JsonSerializer.Deserialize<RepositoryConfig>(File.ReadAllBytes(configPath)) ?? throw new JsonException("empty");
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
        return new BackupRepository(path, config, keys, chunks, null) { ReadOnly = !PrepareForWriting(path) };
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

    // ---- chunks ----------------------------------------------------------------------------

    /// <summary>Where the chunk files are; the pipelines reach them only through it.</summary>
    public IChunkStore Chunks { get; }

    /// <summary>Whether the stored chunk reads, decodes and hashes to its name (a checked read, as restore does).</summary>
    internal bool ChunkIsSound(ChunkId id, ChunkCodec codec)
    {
        var file = System.Buffers.ArrayPool<byte>.Shared.Rent(ChunkFileCapacity(Config.ChunkSize));
        try
        {
            return FileIsSound(id, codec, file.AsSpan(0, Chunks.Read(id, file)));
        }
        catch (CorruptDataException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(file);
        }
    }

    /// <summary>Sets a chunk that failed its check aside (<see cref="IChunkStore.SetAside"/>), rechecked once aside with <paramref name="codec"/>.</summary>
    internal ChunkQuarantine QuarantineChunk(ChunkId id, ChunkCodec codec) =>
        Chunks.SetAside(id, Clock.GetUtcNow(), file => FileIsSound(id, codec, file));

    private bool FileIsSound(ChunkId id, ChunkCodec codec, ReadOnlySpan<byte> file)
    {
        var scratch = System.Buffers.ArrayPool<byte>.Shared.Rent(Config.ChunkSize);
        try
        {
            codec.Open(id, file, scratch);
            return true;
        }
        catch (CorruptDataException)
        {
            return false;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(scratch);
        }
    }

    /// <summary>The largest a chunk file can be: the encoding byte, a chunk stored raw, the cipher's nonce and tag.</summary>
    internal static int ChunkFileCapacity(int chunkSize) => 1 + chunkSize + BlobCipher.Overhead;

    // ---- restore point files ----------------------------------------------------------------

    /// <summary>Where the restore points are; everything reaches their files through it (a point exists while its index does).</summary>
    internal IPointStore Points { get; }

    private byte[] Associated(string source, string id, string file) => Encoding.UTF8.GetBytes($"point:{source}/{id}/{file}");

    internal void WritePointFile(string source, string id, string file, ReadOnlySpan<byte> plaintext, Durability durability)
    {
        var content = Keys is null ? plaintext.ToArray() : BlobCipher.Seal(Keys.DataKey, plaintext, Associated(source, id, file));
        Points.Write(source, id, file, content, durability);
    }

    internal byte[] ReadPointFile(string source, string id, string file)
    {
        var content = Points.Read(source, id, file) ?? throw new CorruptDataException($"{source}/{id}/{file} is missing from the repository.");
        if (Keys is null) return content;
        try
        {
            return BlobCipher.Open(Keys.DataKey, content, Associated(source, id, file));
        }
        catch (CryptographicException)
        {
            throw new CorruptDataException($"{source}/{id}/{file} does not decrypt (damaged or altered).");
        }
    }

    // ---- reading restore points -------------------------------------------------------------

    /// <summary>The readable restore points, oldest first. A point whose index is damaged is left out (see <see cref="ScanRestorePoints"/>), one forgotten meanwhile too.</summary>
    public IReadOnlyList<RestorePoint> ListRestorePoints(string? source = null) => ScanRestorePoints(source).Points;

    /// <summary>
    /// Every restore point with an index: the readable ones, oldest first, and apart the ones whose
    /// index cannot be read, so that one damaged file stops no listing, retention, statistics or GC
    /// (retention and GC keep such a point; verify reports it; <see cref="ForgetPoint"/> removes it).
    /// </summary>
    public RestorePointScan ScanRestorePoints(string? source = null)
    {
        var points = new List<RestorePoint>();
        var unreadable = new List<UnreadableRestorePoint>();
        foreach (var s in source is null ? Points.Sources() : [source])
        {
            foreach (var id in Points.Points(s))
            {
                try { points.Add(LoadIndex(s, id)); }
                catch (RepositoryException e)
                {
                    if (Points.Exists(s, id)) unreadable.Add(new UnreadableRestorePoint(s, id, e.Message)); // else forgotten meanwhile
                }
            }
        }
        return new RestorePointScan([.. points.OrderBy(p => p.Time).ThenBy(p => p.Id, StringComparer.Ordinal)], unreadable);
    }

    public RestorePoint LoadIndex(string source, string id)
    {
        if (!Points.Exists(source, id))
            throw new RepositoryException($"There is no restore point {source}/{id}.");
        try
        {
            var index = JsonSerializer.Deserialize<RestorePoint>(ReadPointFile(source, id, "index")) ?? throw new JsonException("empty");
            if (index.Source != source || index.Id != id) throw new CorruptDataException($"{source}/{id}/index names another restore point ({index.Source}/{index.Id}).");
            if (index.Format != RepositoryConfig.CurrentFormat)
                throw new CorruptDataException($"{source}/{id}/index is of format {index.Format}; this version reads format {RepositoryConfig.CurrentFormat} (damaged, or written by a newer ProxyBackup).");
            return index;
        }
        catch (JsonException e)
        {
            throw new CorruptDataException($"{source}/{id}/index is damaged: {e.Message}");
        }
    }

    public Manifest LoadManifest(RestorePoint point, string disk)
    {
        var entry = point.Disk(disk);
        var bytes = ReadPointFile(point.Source, point.Id, ManifestFile(disk));
        if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), entry.ManifestSha256, StringComparison.Ordinal))
            throw new CorruptDataException($"{point.Source}/{point.Id}/{ManifestFile(disk)} does not match its index (damaged or replaced).");
        var name = $"{point.Source}/{point.Id}/{ManifestFile(disk)}";
        var manifest = Manifest.Parse(bytes, name);
        // A restore sizes its target from the index and cuts chunks by the config: both must agree
        // with the manifest, or the restore would write a disk of the wrong shape.
        if (manifest.DiskSize != entry.Size)
            throw new CorruptDataException($"{name} describes a disk of {manifest.DiskSize} bytes, its index says {entry.Size} (damaged or edited).");
        if (manifest.ChunkSize != Config.ChunkSize)
            throw new CorruptDataException($"{name} has chunks of {manifest.ChunkSize} bytes, the repository's config says {Config.ChunkSize} (damaged or edited).");
        return manifest;
    }

    public byte[] LoadMetadata(RestorePoint point, string name)
    {
        var entry = point.Metadata.FirstOrDefault(m => m.Name == name) ?? throw new RepositoryException($"Restore point {point.Source}/{point.Id} has no metadata '{name}'.");
        var bytes = ReadPointFile(point.Source, point.Id, MetadataFile(name));
        if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), entry.Sha256, StringComparison.Ordinal))
            throw new CorruptDataException($"Metadata {name} of {point.Source}/{point.Id} does not match its index.");
        return bytes;
    }

    internal static string ManifestFile(string disk) => $"disk-{disk}.manifest";
    internal static bool IsManifestFile(string file) => file.StartsWith("disk-", StringComparison.Ordinal) && file.EndsWith(".manifest", StringComparison.Ordinal);
    internal static string MetadataFile(string name) => $"meta-{name}";
}

/// <summary>The repository's file system is full. Nothing half-written became visible.</summary>
public sealed class RepositoryFullException(string root, Exception inner)
    : RepositoryException($"The repository's disk is full ({root}): no restore point was written. Free space (apply retention and run gc) or grow the disk, then retry.", inner);
