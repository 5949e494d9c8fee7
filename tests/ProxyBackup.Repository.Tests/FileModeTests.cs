using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>Backups hold whole disks: nothing the repository writes, restores or exports is readable by others.</summary>
public class FileModeTests
{
    private const UnixFileMode GroupOrOthers = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute
        | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;

    [Fact]
    public async Task Repository_files_keys_and_restored_images_belong_to_the_owner_only()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10, Key = RepositoryKey.FromPassphrase("pw") });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 1L << 20);
        RestorePoint point;
        using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", disk); point = w.Commit(); }
        var restored = dir.Combine("out", "restored.img");
        await repo.RestoreDiskAsync(point, "0", restored);
        await repo.ExportAsync(point, "0", dir.Combine("export.raw"), DiskFormat.Raw);

        var open = Directory.EnumerateFileSystemEntries(repo.Root, "*", SearchOption.AllDirectories).Append(repo.Root)
            .Concat([restored, dir.Combine("export.raw")])
            .Where(p => (File.GetUnixFileMode(p) & GroupOrOthers) != 0)
            .Select(p => $"{p} {File.GetUnixFileMode(p)}").ToList();
        Assert.True(open.Count == 0, "readable by group or others: " + string.Join(", ", open));
        Assert.NotEmpty(Directory.EnumerateFiles(Path.Combine(repo.Root, "keys")));
    }
}
