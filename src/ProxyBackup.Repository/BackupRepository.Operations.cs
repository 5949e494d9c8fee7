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
