using ProxyBackup.TestSupport;
using ProxyBackup.Contracts;

namespace ProxyBackup.Repository.Tests;

public class MaintenanceTests
{
    private static RestorePoint Point(string source, DateTimeOffset time) =>
        new() { Source = source, Id = BackupRepository.NewRestorePointId(time), Time = time };

    private static readonly DateTimeOffset Now = new(2026, 11, 21, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Keep_last_keeps_the_newest()
    {
        var points = Enumerable.Range(0, 5).Select(i => Point("vm-1", Now.AddHours(-i))).ToList();
        var plan = Retention.Plan(points, new RetentionPolicy { KeepLast = 2 }, Now, TimeZoneInfo.Utc);
        Assert.Equal(points.Take(2).Select(p => p.Id), plan.Where(d => d.Keep).Select(d => d.Point.Id));
    }

    [Fact]
    public void Gfs_keeps_one_per_period_newest_in_each()
    {
        // Two backups a day for 60 days.
        var points = Enumerable.Range(0, 120).Select(i => Point("vm-1", Now.AddHours(-12 * i))).ToList();
        var plan = Retention.Plan(points, new RetentionPolicy { KeepDaily = 7, KeepWeekly = 4, KeepMonthly = 3 }, Now, TimeZoneInfo.Utc);
        var kept = plan.Where(d => d.Keep).ToList();
        var daily = kept.Where(d => d.Reasons.Any(r => r.StartsWith("daily", StringComparison.Ordinal))).ToList();
        Assert.Equal(7, daily.Count);
        Assert.All(daily, d => Assert.Equal(12, d.Point.Time.Hour)); // the newer of each day's two
        Assert.Equal(4, kept.Count(d => d.Reasons.Any(r => r.StartsWith("weekly", StringComparison.Ordinal))));
        Assert.Equal(3, kept.Count(d => d.Reasons.Any(r => r.StartsWith("monthly", StringComparison.Ordinal))));
        Assert.True(kept.Count < 14);
        Assert.Contains(plan, d => !d.Keep);
    }

    [Fact]
    public void Keep_within_and_empty_policy()
    {
        var points = Enumerable.Range(0, 10).Select(i => Point("vm-1", Now.AddDays(-i))).ToList();
        var within = Retention.Plan(points, new RetentionPolicy { KeepWithin = TimeSpan.FromDays(3) }, Now, TimeZoneInfo.Utc);
        Assert.Equal(4, within.Count(d => d.Keep));
        Assert.All(Retention.Plan(points, new RetentionPolicy(), Now), d => Assert.True(d.Keep));
        Assert.Throws<ArgumentException>(() => Retention.Plan(points, new RetentionPolicy { KeepLast = -1 }, Now));
    }

    [Fact]
    public void Sources_are_judged_apart()
    {
        var points = new[] { Point("vm-1", Now.AddDays(-1)), Point("vm-1", Now), Point("vm-2", Now.AddDays(-5)) };
        var plan = Retention.Plan(points, new RetentionPolicy { KeepLast = 1 }, Now, TimeZoneInfo.Utc);
        Assert.True(plan.Single(d => d.Point.Source == "vm-2").Keep);
        Assert.Equal(1, plan.Count(d => d.Point.Source == "vm-1" && d.Keep));
    }

    [Fact]
    public async Task Retention_then_gc_frees_only_unreferenced_chunks_and_dry_run_changes_nothing()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        RestorePoint? parent = null;
        for (var i = 0; i < 3; i++)
        {
            if (i > 0) TestDisks.Scribble(disk, 3, 4096, 64 << 10, seed: i);
            using var w = repo.StartRestorePoint("vm-1", parent);
            await w.AddDiskAsync("0", disk);
            parent = w.Commit();
        }
        var dry = repo.ApplyRetention(new RetentionPolicy { KeepLast = 1 }, dryRun: true);
        Assert.Equal(2, dry.Count(d => !d.Keep));
        Assert.Equal(3, repo.ListRestorePoints().Count);
        repo.ApplyRetention(new RetentionPolicy { KeepLast = 1 }, dryRun: false);
        Assert.Single(repo.ListRestorePoints());

        var inGrace = repo.CollectGarbage(TimeSpan.FromHours(1));
        Assert.Equal(0, inGrace.ChunksRemoved);
        Assert.True(inGrace.ChunksInGrace > 0);
        // The grace is measured on the repository's clock: two hours later the same grace has passed.
        repo.Clock = new ManualClock(DateTimeOffset.UtcNow.AddHours(2));
        var gc = repo.CollectGarbage(TimeSpan.FromHours(1));
        Assert.True(gc.ChunksRemoved > 0);
        Assert.Equal(inGrace.ChunksInGrace, gc.ChunksRemoved);
        Assert.True(gc.BytesFreed > 0);
        Assert.True((await repo.VerifyAsync(true)).Ok);
        var restored = dir.Combine("r.img");
        await repo.RestoreDiskAsync(repo.Latest("vm-1")!, "0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
    }

    [Fact]
    public async Task Stats_count_dedup_and_compression()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3L << 20);
        for (var i = 0; i < 2; i++)
        {
            using var w = repo.StartRestorePoint("vm-1", repo.Latest("vm-1"));
            await w.AddDiskAsync("0", disk);
            w.Commit();
        }
        var s = repo.Stats();
        Assert.Equal(2, s.RestorePoints);
        Assert.Equal(6L << 20, s.LogicalBytes);
        Assert.InRange(s.DedupRatio, 1.99, 2.01); // the same disk twice
        Assert.True(s.CompressionRatio > 1.2, $"text should compress: {s.CompressionRatio}");
        Assert.Equal("vm-1", Assert.Single(s.Sources).Source);
    }

    [Fact]
    public void Exclusive_lock_waits_for_shared_and_stale_locks_are_cleared()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions());
        using (RepositoryLock.Acquire(repo, exclusive: false, "backup"))
        using (RepositoryLock.Acquire(repo, exclusive: false, "another backup"))
        {
            var e = Assert.Throws<RepositoryLockedException>(() => RepositoryLock.Acquire(repo, exclusive: true, "gc"));
            Assert.Contains("backup", e.Message, StringComparison.Ordinal);
        }
        using (RepositoryLock.Acquire(repo, exclusive: true, "gc"))
            Assert.Throws<RepositoryLockedException>(() => RepositoryLock.Acquire(repo, exclusive: false, "backup"));

        // A lock left by a process of this boot that no longer exists does not block anybody.
        var dead = new RepositoryLock.LockInfo(Environment.MachineName, 999_999, 1, "crashed backup", DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, Boot: ProcessOwner.BootId);
        File.WriteAllBytes(Path.Combine(repo.Root, "locks", "exclusive-dead"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(dead));
        var old = dead with { Pid = Environment.ProcessId, ProcessStart = 0, Refreshed = DateTimeOffset.UtcNow.AddHours(-2) };
        File.WriteAllBytes(Path.Combine(repo.Root, "locks", "exclusive-old"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(old));
        using (RepositoryLock.Acquire(repo, exclusive: true, "gc")) { }
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(repo.Root, "locks")));

        // A clone of the appliance (same host name, another boot id) holds a live lock whose pid
        // means nothing here: it blocks until its refreshes stop, never because the pid is free here.
        var clone = dead with { Boot = "another-machine-boot-id", Refreshed = DateTimeOffset.UtcNow };
        File.WriteAllBytes(Path.Combine(repo.Root, "locks", "exclusive-clone"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(clone));
        Assert.Throws<RepositoryLockedException>(() => RepositoryLock.Acquire(repo, exclusive: false, "backup", TimeSpan.Zero));
        Assert.Single(RepositoryLock.Holders(repo.Storage, TimeProvider.System));
        File.WriteAllBytes(Path.Combine(repo.Root, "locks", "exclusive-clone"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(clone with { Refreshed = DateTimeOffset.UtcNow.AddHours(-1) }));
        using (RepositoryLock.Acquire(repo, exclusive: true, "gc")) { }
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(repo.Root, "locks")));
    }

    [RootFact]
    public async Task A_full_disk_fails_the_backup_cleanly_and_leaves_the_repository_valid()
    {
        using var dir = new TempDirectory();
        var mount = dir.Combine("small");
        Directory.CreateDirectory(mount);
        Run("mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", mount);
        try
        {
            var repo = BackupRepository.Create(Path.Combine(mount, "repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10, CompressionLevel = 1 });
            var small = dir.Combine("small.img");
            TestDisks.WriteMixed(small, 1L << 20, seed: 3);
            using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", small); w.Commit(); }
            var big = dir.Combine("big.img");
            var random = new byte[8 << 20];
            new Random(4).NextBytes(random);
            File.WriteAllBytes(big, random);
            using (var w = repo.StartRestorePoint("vm-2"))
            {
                var e = await Assert.ThrowsAsync<RepositoryFullException>(() => w.AddDiskAsync("0", big));
                Assert.Contains("disk is full", e.Message, StringComparison.Ordinal);
            }
            Assert.Single(repo.ListRestorePoints());
            Assert.True((await repo.VerifyAsync(readData: true)).Ok);
            repo.CollectGarbage(TimeSpan.Zero);
            var back = dir.Combine("back.img");
            await repo.RestoreDiskAsync(repo.Latest("vm-1")!, "0", back);
            Assert.Equal(TestDisks.Sha256(small), TestDisks.Sha256(back));
        }
        finally
        {
            Run("umount", "-l", mount);
        }
    }

    [RootFact]
    public async Task A_restore_onto_a_file_system_without_room_fails_before_writing_and_leaves_no_file()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        var disk = dir.Combine("disk.img");
        var random = new byte[4 << 20];
        new Random(6).NextBytes(random);
        File.WriteAllBytes(disk, random);
        using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", disk); w.Commit(); }
        var mount = dir.Combine("small");
        Directory.CreateDirectory(mount);
        Run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mount);
        try
        {
            var target = Path.Combine(mount, "out.img");
            var e = await Assert.ThrowsAsync<RepositoryException>(() => repo.RestoreDiskAsync(repo.Latest("vm-1")!, "0", target));
            Assert.StartsWith($"No room for the restored disk on the file system of {target}: its data needs 4,194,304 bytes.", e.Message, StringComparison.Ordinal);
            Assert.False(File.Exists(target));
        }
        finally
        {
            Run("umount", "-l", mount);
        }
    }

    internal static void Run(string file, params string[] args)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(file, args) { RedirectStandardError = true })!;
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)}: {p.StandardError.ReadToEnd()}");
    }
}
