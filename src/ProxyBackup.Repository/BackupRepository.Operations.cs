using System.Diagnostics;

namespace ProxyBackup.Repository;

/// <summary>Backup, restore and export entry points.</summary>
public sealed partial class BackupRepository
{
    /// <summary>Starts a restore point of <paramref name="source"/>; with a parent, disks are compared with the parent's.</summary>
    public RestorePointWriter StartRestorePoint(string source, RestorePoint? parent = null, IReadOnlyDictionary<string, string>? tags = null) =>
        new(this, source, parent, tags);

    /// <summary>The newest restore point of a source, or null.</summary>
    public RestorePoint? Latest(string source) => ListRestorePoints(source).LastOrDefault();

    public async Task<DiskRestoreStats> RestoreDiskAsync(RestorePoint point, string disk, string targetPath, RestoreOptions? options = null,
        IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        using var held = await RepositoryLock.AcquireAsync(this, exclusive: false, purpose: $"restore of {point.Source}/{point.Id}", SharedLockWait, ct).ConfigureAwait(false);
        var manifest = LoadManifest(point, disk);
        return await held.RunAsync(ct, token => new DiskRestore(StoredChunks, Tuning, Memory).RunAsync(manifest, targetPath, options ?? new RestoreOptions(), progress, token)).ConfigureAwait(false);
    }

    /// <summary>
    /// Reads a disk (a block device, with O_DIRECT: what the device holds, not the proxy's cache; or a
    /// file) and compares each chunk with the restore point's: all zeros where the manifest has a zero
    /// chunk, else the same chunk name (docs/repository-format.md, "Manifests"). A drill checks a
    /// restored disk this way; no chunk is read from the repository.
    /// </summary>
    public async Task<DiskComparison> CompareDiskAsync(RestorePoint point, string disk, string path, IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        var manifest = LoadManifest(point, disk);
        var hasher = new ChunkHasher(StoredChunks.NameKey, concurrentCallers: 1);
        using var source = BlockSource.OpenRead(path);
        using var buffer = new AlignedBuffer((manifest.ChunkSize + 4095) / 4096 * 4096);
        var started = Stopwatch.GetTimestamp();
        var (differing, read) = (0, 0L);
        long? first = null;
        for (var i = 0; i < manifest.Chunks.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var offset = (long)i * manifest.ChunkSize;
            var length = manifest.ChunkLength(i);
            // A whole aligned buffer is asked for (O_DIRECT); the disk's end returns less.
            var got = await Task.Run(() => source.ReadFull(buffer.GetSpan()[..((length + 4095) / 4096 * 4096)], offset), ct).ConfigureAwait(false);
            var data = buffer.GetSpan()[..Math.Min(got, length)];
            var expected = manifest.Chunks[i];
            var allZero = !data.ContainsAnyExcept((byte)0);
            var same = data.Length == length && (expected.IsZero ? allZero : !allZero && hasher.Name(data) == expected);
            if (!same)
            {
                differing++;
                first ??= offset;
            }
            read += length;
            progress?.Report(new TransferProgress("compare", manifest.DiskSize, read, null, Stopwatch.GetElapsedTime(started)));
        }
        return new DiskComparison(manifest.DiskSize, manifest.Chunks.Count, differing, first);
    }

    /// <summary>A seekable read-only stream over one disk of a restore point.</summary>
    public Stream OpenDisk(RestorePoint point, string disk) => new RestorePointStream(StoredChunks, LoadManifest(point, disk));

    /// <summary>Exports a disk as a new raw sparse file, or as qcow2 through qemu-img (Debian qemu-utils); an existing file is refused.</summary>
    public async Task ExportAsync(RestorePoint point, string disk, string outputPath, DiskFormat format,
        IProgress<TransferProgress>? progress = null, CancellationToken ct = default)
    {
        if (format == DiskFormat.Raw)
        {
            await RestoreDiskAsync(point, disk, outputPath, new RestoreOptions { RefuseExistingFile = true }, progress, ct).ConfigureAwait(false);
            return;
        }
        if (File.Exists(outputPath)) throw BlockSource.ExistingFileRefused(outputPath);
        var qemuImg = LocateQemuImg() ?? throw new RepositoryException("qcow2 export needs qemu-img, which is not installed: apt-get install qemu-utils (or export raw).");
        var raw = outputPath + ".raw.part";
        try
        {
            await RestoreDiskAsync(point, disk, raw, null, progress, ct).ConfigureAwait(false);
            var psi = new ProcessStartInfo(qemuImg) { RedirectStandardError = true, UseShellExecute = false };
            foreach (var a in new[] { "convert", "-q", "-f", "raw", "-O", "qcow2", raw, outputPath }) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            var error = await p.StandardError.ReadToEndAsync(ct).ConfigureAwait(false);
            await p.WaitForExitAsync(ct).ConfigureAwait(false);
            if (p.ExitCode != 0) throw new RepositoryException($"qemu-img convert failed: {error.Trim()}");
        }
        finally
        {
            AtomicFile.TryDelete(raw);
        }
    }

    /// <summary>Where qemu-img is; replaceable so that its absence can be tested without touching PATH.</summary>
    internal static Func<string?> LocateQemuImg { get; set; } = FindQemuImgOnPath;

    private static string? FindQemuImgOnPath() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin").Split(':').Select(d => Path.Combine(d, "qemu-img")).FirstOrDefault(File.Exists);
}

public enum DiskFormat { Raw, Qcow2 }

/// <summary>A disk compared with a restore point's: how many of its chunks differ, and where the first one is.</summary>
public sealed record DiskComparison(long Bytes, int Chunks, int DifferingChunks, long? FirstDifferenceOffset)
{
    public bool Same => DifferingChunks == 0;
}
