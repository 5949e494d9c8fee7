using System.Text.Json.Serialization;

namespace ProxyBackup.Repository;

/// <summary>A restore point's <c>index</c>: written last, its presence makes the restore point exist.</summary>
public sealed record RestorePoint
{
    [JsonPropertyName("format")] public int Format { get; init; } = RepositoryConfig.CurrentFormat;
    [JsonPropertyName("source")] public required string Source { get; init; }
    [JsonPropertyName("id")] public required string Id { get; init; }
    [JsonPropertyName("time")] public required DateTimeOffset Time { get; init; }
    [JsonPropertyName("parent")] public string? Parent { get; init; }
    [JsonPropertyName("tags")] public Dictionary<string, string> Tags { get; init; } = [];
    [JsonPropertyName("disks")] public List<DiskEntry> Disks { get; init; } = [];
    [JsonPropertyName("metadata")] public List<MetadataEntry> Metadata { get; init; } = [];

    public DiskEntry Disk(string disk) => Disks.FirstOrDefault(d => d.Disk == disk)
        ?? throw new RepositoryException($"Restore point {Source}/{Id} has no disk '{disk}' (it has: {string.Join(", ", Disks.Select(d => d.Disk))}).");
}

public sealed record DiskEntry
{
    [JsonPropertyName("disk")] public required string Disk { get; init; }
    [JsonPropertyName("size")] public long Size { get; init; }
    [JsonPropertyName("manifest_sha256")] public required string ManifestSha256 { get; init; }
    [JsonPropertyName("stats")] public required DiskBackupStats Stats { get; init; }
}

public sealed record MetadataEntry(
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("sha256")] string Sha256);

/// <summary>What reading one disk into the repository did.</summary>
public sealed record DiskBackupStats
{
    /// <summary>Bytes read from the source (the whole disk).</summary>
    [JsonPropertyName("read")] public long Read { get; init; }

    /// <summary>Bytes in all-zero chunks (not hashed, not stored).</summary>
    [JsonPropertyName("zero")] public long Zero { get; init; }

    /// <summary>Bytes in chunks that differ from the previous restore point at the same position.</summary>
    [JsonPropertyName("changed")] public long Changed { get; init; }

    /// <summary>Bytes written to the repository for chunks it did not hold yet, after compression (and encryption).</summary>
    [JsonPropertyName("new_stored")] public long NewStored { get; init; }

    /// <summary>Chunks newly written.</summary>
    [JsonPropertyName("new_chunks")] public int NewChunks { get; init; }

    /// <summary>Of those, chunks whose stored copy was damaged and was replaced (set aside as damaged); absent when 0.</summary>
    [JsonPropertyName("repaired")]
    [JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingDefault)]
    public int Repaired { get; init; }

    [JsonPropertyName("seconds")] public double Seconds { get; init; }
}

/// <summary>A restore point whose index cannot be read, and why.</summary>
public sealed record UnreadableRestorePoint(string Source, string Id, string Problem);

/// <summary>What <see cref="BackupRepository.ScanRestorePoints"/> found.</summary>
public sealed record RestorePointScan(IReadOnlyList<RestorePoint> Points, IReadOnlyList<UnreadableRestorePoint> Unreadable);
