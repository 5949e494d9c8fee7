using ProxyBackup.Contracts;
using System.Text.Json.Serialization;

namespace ProxyBackup.Repository;

/// <summary>The repository's <c>config</c> file (docs/repository-format.md).</summary>
public sealed record RepositoryConfig
{
    public const int CurrentFormat = 1;
    public const int MinChunkSize = 64 << 10;
    public const int MaxChunkSize = 64 << 20;
    public const int DefaultChunkSize = 4 << 20;

    [JsonPropertyName("format")] public int Format { get; init; } = CurrentFormat;
    [JsonPropertyName("id")] public required string Id { get; init; }
    [JsonPropertyName("chunk_size")] public int ChunkSize { get; init; } = DefaultChunkSize;
    [JsonPropertyName("compression")] public CompressionConfig Compression { get; init; } = new();
    [JsonPropertyName("encryption")] public EncryptionConfig? Encryption { get; init; }
    [JsonPropertyName("created")] public DateTimeOffset Created { get; init; }

    [JsonIgnore] public bool Encrypted => Encryption is not null;

    public void Validate(string path)
    {
        if (Format != CurrentFormat)
            throw new RepositoryException($"{path} is a repository of format {Format}; this version reads format {CurrentFormat}. Upgrade ProxyBackup.");
        if (ChunkSize < MinChunkSize || ChunkSize > MaxChunkSize || (ChunkSize & (ChunkSize - 1)) != 0)
            throw new RepositoryException($"{path}/config has an invalid chunk_size {ChunkSize} (a power of two from {MinChunkSize} to {MaxChunkSize}).");
        if (Compression.Algorithm != "zstd")
            throw new RepositoryException($"{path}/config names compression '{Compression.Algorithm}', which this version does not know.");
    }
}

public sealed record CompressionConfig
{
    [JsonPropertyName("algorithm")] public string Algorithm { get; init; } = "zstd";

    /// <summary>zstd level 1: fast enough to keep up with two cores of SHA-256; level 3 saves a few percent more.</summary>
    [JsonPropertyName("level")] public int Level { get; init; } = 1;
}

public sealed record EncryptionConfig
{
    [JsonPropertyName("algorithm")] public string Algorithm { get; init; } = "AES-256-GCM";
    [JsonPropertyName("chunk_names")] public string ChunkNames { get; init; } = "HMAC-SHA256";
}

/// <summary>What creating a repository takes.</summary>
public sealed record RepositoryCreateOptions
{
    public int ChunkSize { get; init; } = RepositoryConfig.DefaultChunkSize;
    public int CompressionLevel { get; init; } = 1;

    /// <summary>Null: no encryption.</summary>
    public RepositoryKey? Key { get; init; }

    /// <summary>Where the repository's own disk or share must be mounted before it is created (<see cref="BackupRepository.MountPoint"/>).</summary>
    public string? MountPoint { get; init; }
}

/// <summary>A problem with the repository a user must act on; the message says what to do.</summary>
public class RepositoryException(string message, Exception? inner = null) : UserFacingException(message, inner);

/// <summary>The passphrase or key file does not open this repository.</summary>
public sealed class WrongKeyException(string message) : RepositoryException(message);

/// <summary>A chunk, manifest or index failed its integrity check.</summary>
public sealed class CorruptDataException(string message) : RepositoryException(message);
