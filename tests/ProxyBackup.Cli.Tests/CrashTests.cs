using System.Text.RegularExpressions;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>A backup process killed half-way through, as a crash or reboot of the proxy would.</summary>
public class CrashTests
{
    [Fact]
    public async Task A_killed_backup_leaves_no_restore_point_the_next_backup_succeeds_and_gc_removes_its_leftovers_at_once()
    {
        using var dir = new TempDirectory();
        var repoPath = dir.Combine("repo");
        var repo = BackupRepository.Create(repoPath, new RepositoryCreateOptions { ChunkSize = 256 << 10 });
        var disk = dir.Combine("disk.img");
        var random = new byte[1 << 20];
        var rnd = new Random(11);
        await using (var f = File.Create(disk))
            for (var i = 0; i < 384; i++) { rnd.NextBytes(random); await f.WriteAsync(random); }

        using (var victim = ChildProcess.Start("dotnet", ProxybackupDll, "repository", "backup", "--repo", repoPath, "--source", "vm-7", "--disk", $"0={disk}"))
        {
            // The first progress line means chunks are being written: kill it there, without warning.
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var line = await victim.Process.StandardError.ReadLineAsync(timeout.Token);
            Assert.Contains("backup", line, StringComparison.Ordinal);
            victim.Process.Kill();
            await victim.Process.WaitForExitAsync(timeout.Token);
        }
        Assert.Empty(repo.ListRestorePoints());
        var leftovers = Directory.EnumerateFiles(Path.Combine(repoPath, "chunks"), "*", SearchOption.AllDirectories).Count();
        Assert.True(leftovers < 384 * 4, "the backup was killed before it finished");

        // The crashed process's lock does not block the next backup, which succeeds and is complete.
        using (var w = repo.StartRestorePoint("vm-7"))
        {
            await w.AddDiskAsync("0", disk);
            w.Commit();
        }
        var point = Assert.Single(repo.ListRestorePoints());
        // The killed writer is known dead (its pid is gone): what it left half-written goes at once, not after the grace.
        var gc = repo.CollectGarbage();
        Assert.Equal(1, gc.IncompletePointsRemoved);
        Assert.Empty(Directory.GetFiles(Path.Combine(repoPath, "tmp")));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        var restored = dir.Combine("restored.img");
        await repo.RestoreDiskAsync(point, "0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
    }

    [Fact]
    public async Task Every_chunk_file_is_on_disk_before_it_gets_its_name()
    {
        // A power cut cannot be staged here (no device-mapper), so the order of the system calls is
        // checked instead: a named chunk whose content a crash lost would be trusted by every later
        // backup that finds its name.
        using var dir = new TempDirectory();
        var repoPath = dir.Combine("repo");
        BackupRepository.Create(repoPath, new RepositoryCreateOptions { ChunkSize = 256 << 10 });
        var disk = dir.Combine("disk.img");
        var data = new byte[3 << 20];
        new Random(5).NextBytes(data.AsSpan(0, 2 << 20));
        Array.Fill(data, (byte)'a', 2 << 20, 1 << 20);
        await File.WriteAllBytesAsync(disk, data);
        var trace = dir.Combine("trace");

        var (code, _, error) = await ChildProcess.RunAsync("strace", "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,rename,renameat,renameat2", "-o", trace,
            "dotnet", ProxybackupDll, "repository", "backup", "--repo", repoPath, "--source", "vm-1", "--disk", $"0={disk}");
        Assert.True(code == 0, error);

        var synced = new HashSet<string>(StringComparer.Ordinal);
        var chunkRenames = 0;
        foreach (var line in await File.ReadAllLinesAsync(trace))
        {
            var sync = Regex.Match(line, @"f(?:data)?sync\(\d+<([^>]+)>");
            if (sync.Success) synced.Add(sync.Groups[1].Value);
            var rename = Regex.Match(line, @"rename\w*\(.*?""([^""]+)"",.*?""([^""]+/chunks/[^""]+)""");
            if (!rename.Success) continue;
            chunkRenames++;
            Assert.True(synced.Contains(rename.Groups[1].Value), $"renamed before its content was synced: {line}");
        }
        Assert.Equal(Directory.EnumerateFiles(Path.Combine(repoPath, "chunks"), "*", SearchOption.AllDirectories).Count(), chunkRenames);
        Assert.True(chunkRenames >= 9, $"only {chunkRenames} chunks were written");
    }

    [Fact]
    public async Task The_cli_gives_one_clear_message_and_a_nonzero_exit_on_bad_input()
    {
        using var dir = new TempDirectory();
        using var p = ChildProcess.Start("dotnet", ProxybackupDll, "repository", "list", "--repo", dir.Combine("missing"));
        var error = await p.Process.StandardError.ReadToEndAsync();
        await p.Process.WaitForExitAsync();
        Assert.Equal(1, p.Process.ExitCode);
        Assert.Equal($"proxybackup: Repository {dir.Combine("missing")} does not exist (is the disk or NFS share mounted?).", error.Trim());
    }

    [Fact]
    public async Task The_cli_restore_refuses_an_existing_file_and_leaves_it_alone()
    {
        using var dir = new TempDirectory();
        var repoPath = dir.Combine("repo");
        var repo = BackupRepository.Create(repoPath, new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 1L << 20);
        using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", disk); w.Commit(); }
        var newer = dir.Combine("newer.img");
        File.WriteAllBytes(newer, [1, 2, 3]);

        // A path mistyped onto a file that holds newer data than the backup: it must survive.
        using var p = ChildProcess.Start("dotnet", ProxybackupDll, "repository", "restore", "--repo", repoPath, "--source", "vm-1", "--disk", "0", "--to", newer);
        var error = await p.Process.StandardError.ReadToEndAsync();
        await p.Process.WaitForExitAsync();
        Assert.Equal(1, p.Process.ExitCode);
        Assert.Equal($"proxybackup: {newer} already exists: a restore writes a new file or a block device. Remove the file or choose another path.", error.Trim());
        Assert.Equal([1, 2, 3], File.ReadAllBytes(newer));
    }
}
