using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>The lock protocol (docs/repository-format.md, "Locks"): replaced on refresh, unreadable means held, waits instead of failing, read-only copies need none.</summary>
public class LockTests
{
    /// <summary>A 1 MiB disk of mixed content and its one restore point (source vm-1, disk 0).</summary>
    private static async Task<(string Disk, RestorePoint Point)> BackedUpDiskAsync(TempDirectory dir, BackupRepository repo)
    {
        var disk = dir.Combine("disk.raw");
        TestDisks.WriteMixed(disk, 1 << 20);
        using var writer = repo.StartRestorePoint("vm-1");
        await writer.AddDiskAsync("0", disk);
        return (disk, writer.Commit());
    }

    /// <param name="clock">When given, the repository's clock (refreshes and staleness are judged by it).</param>
    private static (TempDirectory Dir, BackupRepository Repo) NewRepository(ManualClock? clock = null)
    {
        var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10, CompressionLevel = 1 });
        if (clock is not null) repo.Clock = clock;
        return (dir, repo);
    }

    private static string[] LockFiles(BackupRepository repo) => Directory.GetFiles(Path.Combine(repo.Root, "locks"));

    [Fact]
    public void A_refresh_writes_a_new_lock_file_before_it_removes_the_old_one()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var (dir, repo) = NewRepository(clock);
        using var _ = dir;
        using var held = RepositoryLock.Acquire(repo, exclusive: false, purpose: "test");
        var before = Assert.Single(LockFiles(repo));
        clock.Now += TimeSpan.FromMinutes(5);
        held.Refresh();
        var after = Assert.Single(LockFiles(repo));
        Assert.NotEqual(before, after);
        var holder = Assert.Single(RepositoryLock.Holders(repo.Storage, clock));
        Assert.Equal(clock.Now, holder.Info.Refreshed);
        Assert.False(held.Lost.IsCancellationRequested);
    }

    [Fact]
    public void A_lock_that_cannot_be_refreshed_for_too_long_is_lost_and_its_backup_is_not_committed()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var (dir, repo) = NewRepository(clock);
        using var _ = dir;
        using var writer = repo.StartRestorePoint("vm-1");
        writer.AddMetadata("vm.xml", "<VM/>"u8.ToArray());
        // The directory new files are written in becomes a file: every refresh fails from now on.
        foreach (var f in Directory.GetFiles(Path.Combine(repo.Root, "tmp"))) File.Delete(f);
        Directory.Delete(Path.Combine(repo.Root, "tmp"));
        File.WriteAllText(Path.Combine(repo.Root, "tmp"), "not a directory");
        var writerLock = writer.Lock;
        clock.Now += TimeSpan.FromMinutes(5);
        writerLock.Refresh();
        Assert.False(writerLock.Lost.IsCancellationRequested);   // one failed refresh is not yet a lost lock
        clock.Now += RepositoryLock.StaleAfter;
        writerLock.Refresh();
        Assert.True(writerLock.Lost.IsCancellationRequested);
        Assert.Throws<RepositoryLockedException>(() => writer.Commit());
        File.Delete(Path.Combine(repo.Root, "tmp"));
        Assert.Empty(repo.ListRestorePoints());
    }

    [Fact]
    public void A_writer_whose_lock_was_removed_as_stale_does_not_commit()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        using var writer = repo.StartRestorePoint("vm-1");
        writer.AddMetadata("vm.xml", "<VM/>"u8.ToArray());
        // Frozen for longer than the staleness limit: another process removed its lock (and a GC may have run).
        foreach (var f in LockFiles(repo)) File.Delete(f);
        Assert.Throws<RepositoryLockedException>(() => writer.Commit());
        Assert.True(writer.Lock.Lost.IsCancellationRequested);
        Assert.Empty(repo.ListRestorePoints());
        // Its refresh notices too, and does not write itself a new lock.
        writer.Lock.Refresh();
        Assert.Empty(LockFiles(repo));
    }

    [Fact]
    public void A_lock_file_that_cannot_be_read_is_held_until_it_is_old_enough_to_be_stale()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        repo.SharedLockWait = TimeSpan.Zero;
        var unreadable = Path.Combine(Path.Combine(repo.Root, "locks"), "exclusive-0123456789abcdef");
        File.WriteAllText(unreadable, "{ half a lo");
        var e = Assert.Throws<RepositoryLockedException>(() => repo.StartRestorePoint("vm-1"));
        Assert.Contains("an unreadable lock file (exclusive-0123456789abcdef)", e.Message, StringComparison.Ordinal);
        File.SetLastWriteTimeUtc(unreadable, DateTime.UtcNow - RepositoryLock.StaleAfter - TimeSpan.FromMinutes(1));
        using (repo.StartRestorePoint("vm-1")) { }
        Assert.False(File.Exists(unreadable));
    }

    [Fact]
    public async Task A_restore_that_meets_a_gc_waits_for_it_instead_of_failing()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        var (disk, point) = await BackedUpDiskAsync(dir, repo);
        var gc = RepositoryLock.Acquire(repo, exclusive: true, purpose: "gc");
        var restore = repo.RestoreDiskAsync(point, "0", dir.Combine("back.raw"));
        // It cannot finish while the exclusive lock is held: it waits, it does not fail.
        await Task.Delay(1500);
        Assert.False(restore.IsCompleted);
        gc.Dispose();
        await restore;
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("back.raw")));
    }

    [Fact]
    public async Task Retention_of_one_source_runs_beside_a_backup_and_excludes_only_retention_of_that_source()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        repo.ExclusiveLockWait = TimeSpan.Zero;
        var disk = dir.Combine("disk.raw");
        TestDisks.WriteMixed(disk, 256 << 10);
        for (var i = 0; i < 3; i++)
        {
            using var writer = repo.StartRestorePoint("vm-1", repo.Latest("vm-1"));
            await writer.AddDiskAsync("0", disk);
            writer.Commit();
        }
        using (repo.StartRestorePoint("vm-2"))   // a backup of another VM, under way for hours
        {
            var plan = repo.ApplyRetention(new ProxyBackup.Contracts.RetentionPolicy { KeepLast = 1 }, "vm-1", dryRun: false);
            Assert.Equal(2, plan.Count(d => !d.Keep));
            Assert.Single(repo.ListRestorePoints("vm-1"));
            using (RepositoryLock.Acquire(repo, exclusive: false, purpose: "retention elsewhere", scope: "retention:vm-1"))
                Assert.Throws<RepositoryLockedException>(() => repo.Forget(repo.ListRestorePoints("vm-1")[0]));
            // GC runs beside the backup too, and excludes only another GC.
            repo.CollectGarbage();
            using (RepositoryLock.Acquire(repo, exclusive: false, purpose: "another gc", scope: "gc"))
                Assert.Throws<RepositoryLockedException>(() => repo.CollectGarbage());
        }
    }

    [Fact]
    public async Task A_gc_beside_a_running_backup_keeps_what_the_backup_reuses_and_writes_and_removes_the_rest()
    {
        var clock = new ManualClock(DateTimeOffset.UtcNow);
        var (dir, repo) = NewRepository(clock);
        using var _ = dir;
        // Two old restore points, forgotten: their chunks are unreferenced and a month old.
        var (disk, reused) = await BackedUpDiskAsync(dir, repo);
        var other = dir.Combine("other.raw");
        TestDisks.WriteMixed(other, 1 << 20, seed: 99);
        RestorePoint gone;
        using (var w = repo.StartRestorePoint("vm-2")) { await w.AddDiskAsync("0", other); gone = w.Commit(); }
        foreach (var f in Directory.GetFiles(repo.ChunksDirectory(), "*", SearchOption.AllDirectories))
            File.SetLastWriteTimeUtc(f, clock.Now.UtcDateTime.AddDays(-30));
        repo.Forget(reused);
        repo.Forget(gone);

        // A backup starts and reuses vm-1's old chunks; it is still under way three hours later,
        // when a GC runs (grace 1 h): with the mark's start alone as cutoff, all it relies on would go.
        using var writer = repo.StartRestorePoint("vm-1");
        await writer.AddDiskAsync("0", disk);
        clock.Now += TimeSpan.FromHours(3);
        writer.Lock.Refresh();
        var report = repo.CollectGarbage();
        Assert.True(report.ChunksRemoved > 0, "the chunks nobody uses were kept");
        var point = writer.Commit();

        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        await repo.RestoreDiskAsync(point, "0", dir.Combine("back.raw"));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("back.raw")));
    }

    [RootFact]
    public async Task A_read_only_copy_is_listed_verified_and_restored_from_without_a_lock()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        var (disk, _) = await BackedUpDiskAsync(dir, repo);
        var mount = dir.Combine("ro");
        Directory.CreateDirectory(mount);
        await ReadOnlyBindAsync(repo.Root, mount, async () =>
        {
            var copy = BackupRepository.Open(mount, null);
            Assert.True(copy.ReadOnly);
            var point = Assert.Single(copy.ListRestorePoints());
            Assert.True((await copy.VerifyAsync(readData: true)).Ok);
            await copy.RestoreDiskAsync(point, "0", dir.Combine("back.raw"));
            Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("back.raw")));
            Assert.Contains("read-only", Assert.Throws<RepositoryException>(() => copy.StartRestorePoint("vm-1")).Message, StringComparison.Ordinal);
            Assert.Empty(LockFiles(repo));
        });
    }

    /// <summary>Runs <paramref name="body"/> while <paramref name="target"/> shows <paramref name="source"/> read-only (a bind mount, root only).</summary>
    private static async Task ReadOnlyBindAsync(string source, string target, Func<Task> body)
    {
        MaintenanceTests.Run("mount", "--bind", source, target);
        try
        {
            MaintenanceTests.Run("mount", "-o", "remount,bind,ro", target);
            await body();
        }
        finally
        {
            MaintenanceTests.Run("umount", target);
        }
    }

    [RootFact]
    public async Task A_repository_taken_for_read_only_refuses_forget_and_retention_instead_of_removing_without_a_lock()
    {
        // Only tmp/ unwritable: the probe says read-only, while the points could still be deleted.
        var (dir, repo) = NewRepository();
        using var _ = dir;
        await BackedUpDiskAsync(dir, repo);
        var tmp = Path.Combine(repo.Root, "tmp");
        await ReadOnlyBindAsync(tmp, tmp, () =>
        {
            var copy = BackupRepository.Open(repo.Root, null);
            Assert.True(copy.ReadOnly);
            var point = Assert.Single(copy.ListRestorePoints());
            Assert.Contains("read-only", Assert.Throws<RepositoryException>(() => copy.Forget(point)).Message, StringComparison.Ordinal);
            Assert.Throws<RepositoryException>(() => copy.ApplyRetention(new ProxyBackup.Contracts.RetentionPolicy { KeepWithin = TimeSpan.Zero }, "vm-1", dryRun: false));
            Assert.Single(copy.ListRestorePoints());
            return Task.CompletedTask;
        });
    }

    [Fact]
    public async Task A_chunk_a_dead_gc_left_aside_goes_back_under_its_name_and_a_gc_beside_an_unreadable_lock_removes_nothing()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        var (_, point) = await BackedUpDiskAsync(dir, repo);
        // A GC died between moving a chunk aside and looking at its time again, while a backup relied on it.
        var chunk = repo.ChunkPath(repo.LoadManifest(point, "0").Chunks.First(c => !c.IsZero));
        File.Move(chunk, chunk + ".gc");
        File.SetLastWriteTimeUtc(chunk + ".gc", DateTime.UtcNow.AddDays(-30));
        repo.CollectGarbage(TimeSpan.Zero);
        Assert.True(File.Exists(chunk));
        Assert.False(File.Exists(chunk + ".gc"));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);

        // A holder whose lock file cannot be read may have started at any time.
        File.WriteAllText(Path.Combine(Path.Combine(repo.Root, "locks"), "shared-0123456789abcdef"), "{ half a lock");
        var e = Assert.Throws<RepositoryException>(() => repo.CollectGarbage(TimeSpan.Zero));
        Assert.Contains("cannot be read", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Gc_removes_what_a_dead_writer_left_half_written_at_once_and_keeps_what_a_live_writer_writes()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        // Two other processes wrote to the repository, as the format lays it out: a restore point
        // without an index naming its writer, and a tmp file named by it. One still holds its lock;
        // the other was killed (its lock stays behind, stale).
        using var live = ChildProcess.Start("sleep", "600");
        using var killed = ChildProcess.Start("sleep", "600");
        var writers = new[] { (Name: "live", live.Process.Id), (Name: "killed", killed.Process.Id) }.Select(w =>
        {
            var info = new RepositoryLock.LockInfo(Environment.MachineName, w.Id, Contracts.ProcessOwner.StartTicksOf(w.Id)!.Value, "backup of vm-9",
                DateTimeOffset.UtcNow, DateTimeOffset.UtcNow, Boot: Contracts.ProcessOwner.BootId);
            File.WriteAllBytes(Path.Combine(Path.Combine(repo.Root, "locks"), $"shared-{w.Id:x16}"), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(info));
            var tag = WriterTag.Of(info)!;
            var point = dir.Combine("repo", "points", "vm-9", $"20261204T12000{w.Name.Length % 10}Z-0000000a");
            Directory.CreateDirectory(point);
            File.WriteAllText(Path.Combine(point, LocalPointStore.WriterFile), tag);
            File.WriteAllBytes(Path.Combine(point, "disk-0.manifest"), [1, 2, 3]);
            var tmp = dir.Combine("repo", "tmp", $"{new string('a', 64)}.{tag}.{Guid.NewGuid():N}");
            File.WriteAllBytes(tmp, [4, 5, 6]);
            return (w.Name, Point: point, Tmp: tmp);
        }).ToDictionary(w => w.Name);
        // A tmp file named the way releases before writer tags named them: only the grace removes it.
        var untagged = dir.Combine("repo", "tmp", $"config.{live.Process.Id}.{Guid.NewGuid():N}");
        File.WriteAllBytes(untagged, [7]);
        killed.Process.Kill();
        await killed.Process.WaitForExitAsync();

        var first = repo.CollectGarbage();
        Assert.Equal((1, 1), (first.IncompletePointsRemoved, first.TmpFilesRemoved));
        Assert.False(Directory.Exists(writers["killed"].Point));
        Assert.False(File.Exists(writers["killed"].Tmp));
        Assert.True(Directory.Exists(writers["live"].Point));
        Assert.True(File.Exists(writers["live"].Tmp));

        // Once the live writer is gone too, its leftovers go at the next GC; the untagged file waits for the grace.
        live.Process.Kill();
        await live.Process.WaitForExitAsync();
        var second = repo.CollectGarbage();
        Assert.Equal((1, 1), (second.IncompletePointsRemoved, second.TmpFilesRemoved));
        Assert.False(Directory.Exists(writers["live"].Point));
        Assert.True(File.Exists(untagged));
        Assert.Empty(LockFiles(repo));
    }

    [Theory]
    [InlineData("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")]
    [InlineData("disk-0.manifest")]
    [InlineData("meta-vm.xml.v2")]
    [InlineData("index")]
    public void A_tmp_file_names_its_writer_and_only_a_tagged_one_is_read_as_tagged(string file)
    {
        var tag = WriterTag.Current!;
        Assert.NotNull(WriterTag.Parse(tag));
        Assert.Equal(tag, WriterTag.InTmpName(Path.GetFileName(AtomicFile.TmpPath("/r/tmp", "/r/points/vm-1/x/" + file, tag))));
        Assert.Null(WriterTag.InTmpName(Path.GetFileName(AtomicFile.TmpPath("/r/tmp", "/r/points/vm-1/x/" + file, null))));
        Assert.Null(WriterTag.InTmpName("probe-0123456789abcdef"));
        Assert.Null(WriterTag.Parse(""));
        Assert.Null(WriterTag.Parse("w12-34"));
    }

    [Fact]
    public async Task A_lock_from_another_pid_namespace_of_this_kernel_is_not_judged_by_its_pid()
    {
        // A container on the same kernel shares the boot id but not the pids: its live writer's pid
        // is absent here. Only its refreshes may tell it is gone, or a GC would take what it writes.
        var (dir, repo) = NewRepository();
        using var _ = dir;
        using var gone = ChildProcess.Start("sleep", "600");
        var start = Contracts.ProcessOwner.StartTicksOf(gone.Process.Id)!.Value;
        gone.Process.Kill();
        await gone.Process.WaitForExitAsync();
        var now = DateTimeOffset.UtcNow;
        void WriteLock(string name, string? pidNamespace) => File.WriteAllBytes(Path.Combine(Path.Combine(repo.Root, "locks"), name), System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(
            new RepositoryLock.LockInfo("elsewhere", gone.Process.Id, start, "backup of vm-9", now, now, Boot: Contracts.ProcessOwner.BootId, PidNamespace: pidNamespace)));
        WriteLock("shared-00000000000000aa", "pid:[1]");
        WriteLock("shared-00000000000000bb", Contracts.ProcessOwner.PidNamespace);

        var holders = RepositoryLock.Holders(repo.Storage, repo.Clock);

        Assert.Equal(["shared-00000000000000aa"], holders.Select(h => h.Name));
        Assert.Equal(["shared-00000000000000aa"], LockFiles(repo).Select(Path.GetFileName));
    }

    [Fact]
    public async Task A_point_that_gets_its_index_after_gc_listed_it_stays_and_one_a_dead_gc_left_aside_goes_back()
    {
        var (dir, repo) = NewRepository();
        using var _ = dir;
        var (_, point) = await BackedUpDiskAsync(dir, repo);
        var store = new LocalPointStore(repo.Root);
        var pointDir = dir.Combine("repo", "points", "vm-1", point.Id);
        var index = File.ReadAllBytes(Path.Combine(pointDir, "index"));
        File.Delete(Path.Combine(pointDir, "index"));
        var listed = Assert.Single(store.Incomplete());
        Assert.Equal(point.Id, listed.Id);
        // Its writer commits between GC's listing and the removal: the point stays, whole.
        File.WriteAllBytes(Path.Combine(pointDir, "index"), index);
        Assert.False(store.RemoveIncomplete("vm-1", point.Id));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);

        // A GC that died after taking a complete point aside: the next listing puts it back.
        Directory.Move(pointDir, pointDir + ".gc");
        Assert.Empty(store.Incomplete());
        Assert.True(Directory.Exists(pointDir));
        Assert.Equal(point.Id, Assert.Single(repo.ListRestorePoints()).Id);
    }
}
