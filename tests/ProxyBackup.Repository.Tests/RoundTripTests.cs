using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

public class RoundTripTests
{
    private const int Chunk = 64 << 10;

    private static BackupRepository NewRepo(TempDirectory dir, RepositoryKey? key = null) =>
        BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk, Key = key });

    private static async Task<RestorePoint> BackupAsync(BackupRepository repo, string source, string disk, RestorePoint? parent = null)
    {
        using var w = repo.StartRestorePoint("vm-1", parent);
        await w.AddDiskAsync("0", disk);
        w.AddMetadata("vm.xml", "<VM><ID>1</ID></VM>"u8);
        return w.Commit();
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)]
    [InlineData(Chunk - 1L)]
    [InlineData(Chunk * 7L + 12345)]
    [InlineData(3_000_001L)]
    public async Task Restores_bit_exact_whatever_the_size(long size)
    {
        using var dir = new TempDirectory();
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, size);
        var repo = NewRepo(dir);
        var point = await BackupAsync(repo, "vm-1", disk);
        await AssertRestoresBitExactAsync(repo, point, disk, dir.Combine("restored.img"));
        using var stream = repo.OpenDisk(point, "0");
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(stream));
    }

    [Fact]
    public async Task Zero_chunks_are_not_stored_and_restore_sparse()
    {
        using var dir = new TempDirectory();
        var disk = dir.Combine("sparse.img");
        using (var f = new FileStream(disk, FileMode.Create)) { f.SetLength(64L << 20); f.Position = 10 << 20; f.Write("hello"u8); }
        var repo = NewRepo(dir);
        using var w = repo.StartRestorePoint("vm-1");
        var stats = await w.AddDiskAsync("0", disk);
        w.Commit();
        Assert.Equal(64L << 20, stats.Read);
        Assert.Equal((64L << 20) - Chunk, stats.Zero);
        Assert.Equal(1, stats.NewChunks);
        var target = dir.Combine("out.img");
        await AssertRestoresBitExactAsync(repo, repo.Latest("vm-1")!, disk, target);
        Assert.True(AllocatedBytes(target) < 4 << 20, "the restored file should be sparse");
    }

    [Fact]
    public async Task A_file_target_gets_blocks_for_its_data_runs_only_and_keeps_its_size()
    {
        // Data, three zero chunks, two data chunks, a zero chunk, and a short data tail: the restore
        // reserves blocks per run of data chunks before writing, and must neither fill the holes nor
        // grow the file past the disk's size at the short tail.
        using var dir = new TempDirectory();
        var disk = dir.Combine("runs.img");
        var size = 7L * Chunk + 1000;
        var random = new Random(5);
        using (var f = new FileStream(disk, FileMode.Create))
        {
            f.SetLength(size);
            foreach (var chunk in new[] { 0, 4, 5, 7 })
            {
                var data = new byte[(int)Math.Min(Chunk, size - (long)chunk * Chunk)];
                random.NextBytes(data);
                f.Position = (long)chunk * Chunk;
                f.Write(data);
            }
        }
        var repo = NewRepo(dir);
        var target = dir.Combine("out.img");
        await AssertRestoresBitExactAsync(repo, await BackupAsync(repo, "vm-1", disk), disk, target);
        Assert.InRange(AllocatedBytes(target), 3L * Chunk + 1000, 4L * Chunk);
    }

    /// <summary>Restores disk 0 to a new file and checks it has the source's size and content.</summary>
    private static async Task AssertRestoresBitExactAsync(BackupRepository repo, RestorePoint point, string source, string target)
    {
        await repo.RestoreDiskAsync(point, "0", target);
        Assert.Equal(new FileInfo(source).Length, new FileInfo(target).Length);
        Assert.Equal(TestDisks.Sha256(source), TestDisks.Sha256(target));
    }

    private static long AllocatedBytes(string path)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("du", ["-B1", "--", path]) { RedirectStandardOutput = true };
        using var p = System.Diagnostics.Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return long.Parse(output.Split('\t')[0], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Incremental_after_scattered_changes_stores_only_the_changed_chunks()
    {
        using var dir = new TempDirectory();
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 8L << 20);
        var repo = NewRepo(dir);
        var full = await BackupAsync(repo, "vm-1", disk);
        var touched = TestDisks.Scribble(disk, 5, 4096, Chunk, seed: 9);
        var incr = await BackupAsync(repo, "vm-1", disk, full);
        var stats = incr.Disk("0").Stats;
        Assert.Equal(full.Id, incr.Parent);
        Assert.Equal(touched.Count, stats.NewChunks);
        Assert.Equal(touched.Count * (long)Chunk, stats.Changed);
        Assert.InRange(stats.NewStored, 1, touched.Count * (long)(Chunk + 64));

        var unchanged = await BackupAsync(repo, "vm-1", disk, incr);
        Assert.Equal(0, unchanged.Disk("0").Stats.NewChunks);
        Assert.Equal(0, unchanged.Disk("0").Stats.Changed);

        var restoredFull = dir.Combine("full.img");
        await repo.RestoreDiskAsync(full, "0", restoredFull);
        Assert.NotEqual(TestDisks.Sha256(disk), TestDisks.Sha256(restoredFull));
        var restoredIncr = dir.Combine("incr.img");
        await repo.RestoreDiskAsync(incr, "0", restoredIncr);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restoredIncr));
    }

    [Fact]
    public async Task Identical_data_across_disks_is_stored_once()
    {
        using var dir = new TempDirectory();
        var a = dir.Combine("a.img");
        TestDisks.WriteMixed(a, 4L << 20, seed: 5);
        var b = dir.Combine("b.img");
        File.Copy(a, b);
        var repo = NewRepo(dir);
        using var w = repo.StartRestorePoint("vm-2");
        var sa = await w.AddDiskAsync("0", a);
        var sb = await w.AddDiskAsync("1", b);
        w.Commit();
        Assert.True(sa.NewChunks > 0);
        Assert.Equal(0, sb.NewChunks);
    }

    [Fact]
    public async Task Encrypted_repository_round_trips_and_hides_plain_hashes()
    {
        using var dir = new TempDirectory();
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 1L << 20);
        var repo = NewRepo(dir, RepositoryKey.FromPassphrase("correct horse"));
        var point = await BackupAsync(repo, "vm-1", disk);
        var reopened = BackupRepository.Open(repo.Root, RepositoryKey.FromPassphrase("correct horse"));
        var target = dir.Combine("out.img");
        await reopened.RestoreDiskAsync(reopened.LoadIndex("vm-1", point.Id), "0", target);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(target));
        Assert.Equal("<VM><ID>1</ID></VM>"u8.ToArray(), reopened.LoadMetadata(point, "vm.xml"));

        // Chunk names are keyed hashes: the SHA-256 of a stored chunk's content is not among them.
        var firstData = File.ReadAllBytes(disk).AsSpan((int)(1L << 20) / 3, Chunk).ToArray();
        var plainName = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(firstData));
        var names = Directory.EnumerateFiles(Path.Combine(repo.Root, "chunks"), "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
        Assert.NotEmpty(names);
        Assert.DoesNotContain(plainName, names);
        Assert.DoesNotContain("vm.xml", File.ReadAllText(Path.Combine(repo.Root, "points", "vm-1", point.Id, "index")), StringComparison.Ordinal);
    }

    [Fact]
    public void Wrong_passphrase_and_missing_key_are_refused_clearly()
    {
        using var dir = new TempDirectory();
        var repo = NewRepo(dir, RepositoryKey.FromPassphrase("right"));
        var wrong = Assert.Throws<WrongKeyException>(() => BackupRepository.Open(repo.Root, RepositoryKey.FromPassphrase("wrong")));
        Assert.Contains("Wrong passphrase", wrong.Message, StringComparison.Ordinal);
        var none = Assert.Throws<WrongKeyException>(() => BackupRepository.Open(repo.Root, null));
        Assert.Contains("encrypted", none.Message, StringComparison.Ordinal);
        var keyFile = dir.Combine("key");
        File.WriteAllBytes(keyFile, System.Security.Cryptography.RandomNumberGenerator.GetBytes(64));
        repo.AddKey(RepositoryKey.FromKeyFile(keyFile));
        Assert.NotNull(BackupRepository.Open(repo.Root, RepositoryKey.FromKeyFile(keyFile)));
        var shortKey = dir.Combine("short");
        File.WriteAllBytes(shortKey, [1, 2, 3]);
        Assert.Throws<RepositoryException>(() => RepositoryKey.FromKeyFile(shortKey));
    }

    [Fact]
    public void Opening_what_is_not_a_repository_says_what_to_do()
    {
        using var dir = new TempDirectory();
        var missing = Assert.Throws<RepositoryException>(() => BackupRepository.Open(dir.Combine("nope"), null));
        Assert.Contains("does not exist", missing.Message, StringComparison.Ordinal);
        var empty = Assert.Throws<RepositoryException>(() => BackupRepository.Open(dir.Path, null));
        Assert.Contains("not a ProxyBackup repository", empty.Message, StringComparison.Ordinal);
        NewRepo(dir);
        var again = Assert.Throws<RepositoryException>(() => NewRepo(dir));
        Assert.Contains("already holds a repository", again.Message, StringComparison.Ordinal);
        Assert.Throws<RepositoryException>(() => BackupRepository.Create(dir.Combine("bad"), new RepositoryCreateOptions { ChunkSize = 1000 }));
    }

    [Fact]
    public async Task Progress_reports_bytes_and_rate_and_new_data_only_for_backups()
    {
        using var dir = new TempDirectory();
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        var repo = NewRepo(dir);
        var reports = new List<TransferProgress>();
        RestorePoint point;
        using (var w = repo.StartRestorePoint("vm-1"))
        {
            await w.AddDiskAsync("0", disk, new SynchronousProgress<TransferProgress>(reports.Add));
            point = w.Commit();
        }
        Assert.NotEmpty(reports);
        Assert.Equal(2L << 20, reports[^1].DoneBytes);
        Assert.Equal(1.0, reports[^1].Fraction);
        Assert.True(reports[^1].NewBytes > 0);
        Assert.Contains(", new ", reports[^1].ToString(), StringComparison.Ordinal);

        var restoring = new List<TransferProgress>();
        await repo.RestoreDiskAsync(point, "0", dir.Combine("restored.img"), progress: new SynchronousProgress<TransferProgress>(restoring.Add));
        Assert.Equal(2L << 20, restoring[^1].DoneBytes);
        Assert.Null(restoring[^1].NewBytes);
        Assert.DoesNotContain("new", restoring[^1].ToString(), StringComparison.Ordinal);
    }

}
