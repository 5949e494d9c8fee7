using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>`proxybackup files` against the simulator: a VM whose disk holds partitions, ext4 and LVM is backed up, and files are read from the restore point.</summary>
public class FilesCliTests
{
    [GuestDiskFact]
    public async Task Files_are_listed_and_copied_from_an_ext4_and_an_lvm_volume_of_a_vms_restore_point()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: VmDiskImage.Size >> 20);   // the OS disk the size of the guest disk put in its place
        var web = await w.VmAsync("web-01");
        var vg = "pbc" + Guid.NewGuid().ToString("N")[..8];
        var image = Path.Combine(w.Root, "guest.img");
        VmDiskImage.Build(image, Path.Combine(w.Root, "guest"), vg);
        File.Copy(image, w.Sim.Cloud.DiskContentPath(web.Id, 0), overwrite: true);   // the guest's disk 0 is now this one
        var world = await WorldArgsAsync(w);
        var (code, _, error) = await ProxybackupAsync(["vm", "backup", "web-01", .. world]);
        Assert.True(code == 0, error);
        var run = Path.Combine(w.Root, "run");

        (code, var output, error) = await ProxybackupAsync(["files", "ls", "web-01", "--disk", "0", "--run-dir", run, .. world]);
        Assert.True(code == 0, error);
        Assert.Matches(@"disk0p1\s+ext4\s+32\.0 MiB\s+readable", output);
        Assert.Matches(@"disk0p2\s+xfs\s+24\.0 MiB\s+readable", output);
        Assert.Matches($@"{vg}-data\s+ext4\s+16\.0 MiB\s+readable", output);
        (code, output, error) = await ProxybackupAsync(["files", "ls", "web-01", "disk0p1", "--disk", "0", "--run-dir", run, .. world]);
        Assert.True(code == 0, error);
        Assert.Matches(@"f rw-r--r--\s+16 B\s+\S+ \S+Z  hello.txt", output);
        Assert.Contains("escape -> /etc/passwd", output, StringComparison.Ordinal);

        var to = Path.Combine(w.Root, "got");
        (code, output, error) = await ProxybackupAsync(["files", "get", "web-01", "disk0p1/hello.txt", "--to", to, "--disk", "0", "--run-dir", run, .. world]);
        Assert.True(code == 0, error + output);
        (code, output, error) = await ProxybackupAsync(["files", "get", "web-01", $"{vg}-data/lvm.txt", "--to", to, "--disk", "0", "--run-dir", run, .. world]);
        Assert.True(code == 0, error + output);
        Assert.Equal("hello from ext4\n", await File.ReadAllTextAsync(Path.Combine(to, "hello.txt")));
        Assert.Equal("hello from lvm\n", await File.ReadAllTextAsync(Path.Combine(to, "lvm.txt")));

        (code, _, error) = await ProxybackupAsync(["files", "get", "web-01", "disk0p1/nothing-here", "--to", to, "--disk", "0", "--run-dir", run, .. world]);
        Assert.Equal(1, code);
        Assert.Equal("proxybackup: disk0p1/nothing-here does not exist in this restore point.", error.Trim());
        Assert.Empty(Directory.GetFileSystemEntries(run));   // every call took its session down
        Assert.Empty(ProxyBackup.Repository.MountTable.Under(run));
    }
}
