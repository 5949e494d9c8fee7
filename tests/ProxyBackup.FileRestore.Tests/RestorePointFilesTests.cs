using ProxyBackup.Repository;
using ProxyBackup.TestSupport;

namespace ProxyBackup.FileRestore.Tests;

/// <summary>
/// A restore point's files read without restoring its disk (docs/operations.md, "File-level
/// restore"): partitions, ext4, xfs and an LVM volume in two segments found and mounted read-only;
/// files listed and copied; a symbolic link never leads out of its volume; everything taken down
/// afterwards, also after the process that made it died.
/// </summary>
public class RestorePointFilesTests
{
    private static async Task<(BackupRepository Repo, RestorePoint Point, string Vg)> BackedUpAsync(TempDirectory dir)
    {
        var vg = "pbt" + Guid.NewGuid().ToString("N")[..8];
        var image = dir.Combine("vm-disk.img");
        VmDiskImage.Build(image, dir.Combine("work"), vg);
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions());
        using var w = repo.StartRestorePoint("vm-7");
        await w.AddDiskAsync("0", image);
        return (repo, w.Commit(), vg);
    }

    private static IEnumerable<string> LoopsOn(string directory) =>
        Directory.GetDirectories("/sys/block", "loop*")
            .Where(d => File.Exists(Path.Combine(d, "loop", "backing_file")) && File.ReadAllText(Path.Combine(d, "loop", "backing_file")).StartsWith(directory, StringComparison.Ordinal));

    [GuestDiskFact]
    public async Task Files_of_ext4_xfs_and_an_lvm_volume_are_listed_and_copied_and_everything_is_taken_down()
    {
        using var dir = new TempDirectory();
        var (repo, point, vg) = await BackedUpAsync(dir);
        var run = dir.Combine("run");
        var target = dir.Combine("got");

        using (var files = await RestorePointFiles.OpenAsync(repo, point, null, run))
        {
            var volumes = files.Volumes.ToDictionary(v => v.Name);
            Assert.True(volumes.ContainsKey("disk0p1"), string.Join("; ", files.Volumes));
            Assert.Equal("ext4", volumes["disk0p1"].FileSystem);
            Assert.Equal("xfs", volumes["disk0p2"].FileSystem);
            Assert.Equal("LVM2_member", volumes["disk0p3"].FileSystem);
            Assert.Null(volumes["disk0p3"].MountPath);
            Assert.Equal(("ext4", 16L << 20), (volumes[$"{vg}-data"].FileSystem, volumes[$"{vg}-data"].Size));
            Assert.Equal(["disk0p1", "disk0p2", $"{vg}-data"], files.List("").Select(e => e.Name).Order(StringComparer.Ordinal));
            Assert.Contains(files.List("disk0p1"), e => e is { Name: "hello.txt", Kind: 'f', Size: 16 });
            Assert.Contains(files.List("disk0p1"), e => e is { Name: "escape", Kind: 'l', LinkTarget: "/etc/passwd" });
            Assert.Equal("note", Assert.Single(files.List("disk0p1/dir/sub")).Name);

            Assert.Equal(1, files.Get("disk0p1/hello.txt", target).Files);
            Assert.Equal(1, files.Get("disk0p2/xfs.txt", target).Files);
            Assert.Equal(1, files.Get($"{vg}-data/lvm.txt", target).Files);
            var tree = files.Get("disk0p1/dir", target);
            Assert.Equal((1, 2), (tree.Files, tree.Directories));
            Assert.Equal(1, files.Get("disk0p1/escape", target).Links);     // copied as the link it is, not what it names
            Assert.Equal("a note\n", await File.ReadAllTextAsync(Path.Combine(target, "dir", "sub", "note")));
            Assert.Equal("hello from ext4\n", await File.ReadAllTextAsync(Path.Combine(target, "hello.txt")));
            Assert.Equal("hello from xfs\n", await File.ReadAllTextAsync(Path.Combine(target, "xfs.txt")));
            Assert.Equal("hello from lvm\n", await File.ReadAllTextAsync(Path.Combine(target, "lvm.txt")));
            Assert.Equal("/etc/passwd", new FileInfo(Path.Combine(target, "escape")).LinkTarget);
            Assert.Single(files.Get("disk0p1/hello.txt", target).Skipped);   // nothing is overwritten

            // A link is followed inside its volume only: /etc/passwd of the volume, which it lacks.
            Assert.Contains("does not exist in this restore point", Assert.Throws<FileRestoreException>(() => files.List("disk0p1/escape")).Message, StringComparison.Ordinal);
            Assert.Throws<FileRestoreException>(() => files.Get("disk0p1/../../etc", target));
            Assert.Contains("No volume nope", Assert.Throws<FileRestoreException>(() => files.List("nope/x")).Message, StringComparison.Ordinal);
            Assert.NotEmpty(MountTable.Under(run));
        }

        Assert.Empty(MountTable.Under(run));
        Assert.Empty(LoopsOn(run));
        Assert.Empty(Directory.GetFileSystemEntries(run));
    }

    /// <summary>A session whose process is gone (its owner line names a process that does not run) is taken down by the next one.</summary>
    [GuestDiskFact]
    public async Task A_session_left_by_a_dead_process_is_taken_down_before_the_next()
    {
        using var dir = new TempDirectory();
        var (repo, point, _) = await BackedUpAsync(dir);
        var run = dir.Combine("run");
        var left = await RestorePointFiles.OpenAsync(repo, point, null, run);
        var session = Assert.Single(Directory.GetDirectories(run));
        await File.WriteAllTextAsync(Path.Combine(session, "owner"), "999999 1");   // as if its process had been killed

        var removed = RestorePointFiles.CleanStale(run);

        Assert.Equal([session], removed);
        Assert.Empty(MountTable.Under(run));
        Assert.Empty(LoopsOn(run));
        Assert.False(Directory.Exists(session));
        left.Dispose();   // the process's own teardown finds nothing left and does no harm
    }
}
