using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace ProxyBackup.Repository;

/// <summary>
/// A repository's restore points as the pipelines read and write them: the store that holds their
/// files, opened and sealed with the repository's keys, and every file checked against what refers
/// to it (an index against its name and format, a manifest against the index's checksum, size and
/// the repository's chunk size, metadata against the index) (docs/repository-format.md,
/// "Restore point index").
/// </summary>
internal sealed class StoredPoints(IPointStore store, int chunkSize, MasterKeys? keys)
{
    public IPointStore Store => store;

    public static string ManifestFile(string disk) => $"disk-{disk}.manifest";
    public static bool IsManifestFile(string file) => file.StartsWith("disk-", StringComparison.Ordinal) && file.EndsWith(".manifest", StringComparison.Ordinal);
    public static string MetadataFile(string name) => $"meta-{name}";

    private static byte[] Associated(string source, string id, string file) => Encoding.UTF8.GetBytes($"point:{source}/{id}/{file}");

    public void WriteFile(string source, string id, string file, ReadOnlySpan<byte> plaintext, Durability durability)
    {
        var content = keys is null ? plaintext.ToArray() : BlobCipher.Seal(keys.DataKey, plaintext, Associated(source, id, file));
        store.Write(source, id, file, content, durability);
    }

    public byte[] ReadFile(string source, string id, string file)
    {
        var content = store.Read(source, id, file) ?? throw new CorruptDataException($"{source}/{id}/{file} is missing from the repository.");
        if (keys is null) return content;
        try
        {
            return BlobCipher.Open(keys.DataKey, content, Associated(source, id, file));
        }
        catch (CryptographicException)
        {
            throw new CorruptDataException($"{source}/{id}/{file} does not decrypt (damaged or altered).");
        }
    }

    /// <summary>
    /// Every restore point with an index: the readable ones, oldest first, and apart the ones whose
    /// index cannot be read, so that one damaged file stops no listing, retention, statistics or GC
    /// (retention and GC keep such a point; verify reports it; forget removes it).
    /// </summary>
    public RestorePointScan Scan(string? source = null)
    {
        var points = new List<RestorePoint>();
        var unreadable = new List<UnreadableRestorePoint>();
        foreach (var s in source is null ? store.Sources() : [source])
        {
            foreach (var id in store.Points(s))
            {
                try { points.Add(LoadIndex(s, id)); }
                catch (RepositoryException e)
                {
                    if (store.Exists(s, id)) unreadable.Add(new UnreadableRestorePoint(s, id, e.Message)); // else forgotten meanwhile
                }
            }
        }
        return new RestorePointScan([.. points.OrderBy(p => p.Time).ThenBy(p => p.Id, StringComparer.Ordinal)], unreadable);
    }

    public RestorePoint LoadIndex(string source, string id)
    {
        if (!store.Exists(source, id))
            throw new RepositoryException($"There is no restore point {source}/{id}.");
        try
        {
            var index = JsonSerializer.Deserialize(ReadFile(source, id, "index"), RepositoryJson.Default.RestorePoint) ?? throw new JsonException("empty");
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
        var bytes = ReadFile(point.Source, point.Id, ManifestFile(disk));
        if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), entry.ManifestSha256, StringComparison.Ordinal))
            throw new CorruptDataException($"{point.Source}/{point.Id}/{ManifestFile(disk)} does not match its index (damaged or replaced).");
        var name = $"{point.Source}/{point.Id}/{ManifestFile(disk)}";
        var manifest = Manifest.Parse(bytes, name);
        // A restore sizes its target from the index and cuts chunks by the config: both must agree
        // with the manifest, or the restore would write a disk of the wrong shape.
        if (manifest.DiskSize != entry.Size)
            throw new CorruptDataException($"{name} describes a disk of {manifest.DiskSize} bytes, its index says {entry.Size} (damaged or edited).");
        if (manifest.ChunkSize != chunkSize)
            throw new CorruptDataException($"{name} has chunks of {manifest.ChunkSize} bytes, the repository's config says {chunkSize} (damaged or edited).");
        return manifest;
    }

    public byte[] LoadMetadata(RestorePoint point, string name)
    {
        var entry = point.Metadata.FirstOrDefault(m => m.Name == name) ?? throw new RepositoryException($"Restore point {point.Source}/{point.Id} has no metadata '{name}'.");
        var bytes = ReadFile(point.Source, point.Id, MetadataFile(name));
        if (!string.Equals(Convert.ToHexStringLower(SHA256.HashData(bytes)), entry.Sha256, StringComparison.Ordinal))
            throw new CorruptDataException($"Metadata {name} of {point.Source}/{point.Id} does not match its index.");
        return bytes;
    }
}
