using System.Diagnostics;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

public class ExportTests
{
    private static async Task<(BackupRepository Repo, RestorePoint Point, string Disk)> BackedUpAsync(TempDirectory dir)
    {
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, (3L << 20) + 512);
        using var w = repo.StartRestorePoint("vm-1");
        await w.AddDiskAsync("0", disk);
        return (repo, w.Commit(), disk);
    }

    [Fact]
    public async Task Qcow2_export_holds_the_same_disk()
    {
        using var dir = new TempDirectory();
        var (repo, point, disk) = await BackedUpAsync(dir);
        var qcow2 = dir.Combine("disk.qcow2");
        await repo.ExportAsync(point, "0", qcow2, DiskFormat.Qcow2);
        Assert.Equal("QFI\xfb", System.Text.Encoding.Latin1.GetString(File.ReadAllBytes(qcow2), 0, 4));
        var back = dir.Combine("back.raw");
        using (var p = Process.Start(new ProcessStartInfo("qemu-img", ["convert", "-f", "qcow2", "-O", "raw", qcow2, back]))!) p.WaitForExit();
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(back));
        Assert.False(File.Exists(qcow2 + ".raw.part"));
    }

    [Fact]
    public async Task Qcow2_export_without_qemu_img_says_how_to_get_it()
    {
        using var dir = new TempDirectory();
        var (repo, point, _) = await BackedUpAsync(dir);
        var locate = BackupRepository.LocateQemuImg;
        BackupRepository.LocateQemuImg = () => null;
        try
        {
            var e = await Assert.ThrowsAsync<RepositoryException>(() => repo.ExportAsync(point, "0", dir.Combine("x.qcow2"), DiskFormat.Qcow2));
            Assert.Contains("apt-get install qemu-utils", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            BackupRepository.LocateQemuImg = locate;
        }
    }

    [Theory]
    [InlineData(DiskFormat.Raw)]
    [InlineData(DiskFormat.Qcow2)]
    public async Task Export_refuses_to_overwrite_an_existing_file(DiskFormat format)
    {
        using var dir = new TempDirectory();
        var (repo, point, _) = await BackedUpAsync(dir);
        var existing = dir.Combine("precious.img");
        File.WriteAllText(existing, "not a disk, but somebody's file");
        var e = await Assert.ThrowsAsync<RepositoryException>(() => repo.ExportAsync(point, "0", existing, format));
        Assert.Contains("already exists", e.Message, StringComparison.Ordinal);
        Assert.Equal("not a disk, but somebody's file", File.ReadAllText(existing));
    }
}
