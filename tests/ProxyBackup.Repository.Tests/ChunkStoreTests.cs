using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>
/// The pipelines reach chunks only through <see cref="IChunkStore"/>: backup, restore, streams,
/// verify, healing, GC and stats run on an in-memory store, and the repository's own chunks/
/// directory stays empty.
/// </summary>
public class ChunkStoreTests
{
    private const int Chunk = 64 << 10;

    private static (BackupRepository Repo, MemoryChunkStore Store, string Disk) Open(TempDirectory dir, RepositoryKey? key = null)
    {
        var store = new MemoryChunkStore();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk, Key = key }, store);
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        return (repo, store, disk);
    }

    private static async Task<RestorePoint> BackupAsync(BackupRepository repo, string disk, RestorePoint? parent = null)
    {
        using var w = repo.StartRestorePoint("vm-1", parent);
        await w.AddDiskAsync("0", disk);
        return w.Commit();
    }

    /// <summary>A first backup of the disk, one of whose stored chunks then rots in the store.</summary>
    private static async Task<(RestorePoint First, ChunkId Damaged)> BackupAndDamageAsync(BackupRepository repo, MemoryChunkStore store, string disk)
    {
        var first = await BackupAsync(repo, disk);
        var damaged = repo.LoadManifest(first, "0").Chunks.First(c => !c.IsZero);
        store.Damage(damaged);
        return (first, damaged);
    }

    public static TheoryData<bool> Encrypted => [false, true];

    [Theory]
    [MemberData(nameof(Encrypted))]
    public async Task Backup_restore_stream_verify_and_stats_run_on_the_store_given(bool encrypted)
    {
        using var dir = new TempDirectory();
        var (repo, store, disk) = Open(dir, encrypted ? RepositoryKey.FromPassphrase("memory store") : null);
        var point = await BackupAsync(repo, disk);
        var stored = repo.LoadManifest(point, "0").Chunks.Where(c => !c.IsZero).Distinct().Count();
        Assert.Equal(stored, store.Count);
        Assert.Empty(Directory.EnumerateFiles(dir.Combine("repo", "chunks"), "*", SearchOption.AllDirectories));

        await repo.RestoreDiskAsync(point, "0", dir.Combine("out.img"));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("out.img")));
        using (var stream = repo.OpenDisk(point, "0"))
        using (var copy = File.Create(dir.Combine("streamed.img")))
            await stream.CopyToAsync(copy);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("streamed.img")));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        Assert.True(repo.Stats().StoredBytes > 0);
    }

    [Fact]
    public async Task Damage_in_the_store_is_set_aside_by_verify_and_healed_by_the_next_backup()
    {
        using var dir = new TempDirectory();
        var (repo, store, disk) = Open(dir);
        var (first, damaged) = await BackupAndDamageAsync(repo, store, disk);

        var report = await repo.VerifyAsync(readData: true);
        Assert.Equal([damaged.ToString()], report.DamagedChunks);
        Assert.Equal(1, store.SetAsideCount);
        Assert.Null(store.Length(damaged));

        await BackupAsync(repo, disk, first);   // an incremental: the unchanged chunk is absent, so it is stored again
        Assert.NotNull(store.Length(damaged));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        await repo.RestoreDiskAsync(first, "0", dir.Combine("first.img"));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("first.img")));
    }

    [Fact]
    public async Task A_full_backup_stores_again_a_chunk_whose_stored_copy_is_damaged()
    {
        using var dir = new TempDirectory();
        var (repo, store, disk) = Open(dir);
        await BackupAndDamageAsync(repo, store, disk);

        await BackupAsync(repo, disk);   // full: no parent
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        Assert.Equal(1, store.SetAsideCount);
    }

    [Fact]
    public async Task Gc_sweeps_the_store_keeping_what_points_reference_and_what_is_in_grace()
    {
        using var dir = new TempDirectory();
        var (repo, store, disk) = Open(dir);
        var kept = await BackupAsync(repo, disk);
        var other = dir.Combine("other.img");
        TestDisks.WriteMixed(other, 1L << 20, seed: 77);
        RestorePoint forgotten;
        using (var w = repo.StartRestorePoint("vm-2")) { await w.AddDiskAsync("0", other); forgotten = w.Commit(); }
        var onlyForgotten = repo.LoadManifest(forgotten, "0").Chunks.Where(c => !c.IsZero).Except(repo.LoadManifest(kept, "0").Chunks).Distinct().ToList();
        Assert.NotEmpty(onlyForgotten);
        repo.Forget(forgotten);

        var inGrace = repo.CollectGarbage();           // the default grace keeps new chunks
        Assert.Equal(0, inGrace.ChunksRemoved);
        Assert.All(onlyForgotten, c => Assert.NotNull(store.Length(c)));

        var swept = repo.CollectGarbage(TimeSpan.Zero);
        Assert.Equal(onlyForgotten.Count, swept.ChunksRemoved);
        Assert.All(onlyForgotten, c => Assert.Null(store.Length(c)));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
    }

    [Fact]
    public async Task A_failed_backup_removes_from_the_store_what_it_stored_unless_touched_since()
    {
        using var dir = new TempDirectory();
        var (repo, store, disk) = Open(dir);
        using (var failed = repo.StartRestorePoint("vm-1")) await failed.AddDiskAsync("0", disk);
        Assert.Equal(0, store.Count);

        var other = dir.Combine("other.img");
        TestDisks.WriteMixed(other, 1L << 20, seed: 9);
        using (var failed = repo.StartRestorePoint("vm-1"))
        {
            await failed.AddDiskAsync("0", other);
            await BackupAsync(repo, other);   // touches every chunk the failed writer stored
        }
        Assert.Equal(repo.LoadManifest(repo.Latest("vm-1")!, "0").Chunks.Where(c => !c.IsZero).Distinct().Count(), store.Count);
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
    }

    [Fact]
    public async Task With_restore_points_in_a_store_too_the_repository_directory_holds_no_point_or_chunk()
    {
        using var dir = new TempDirectory();
        var chunks = new MemoryChunkStore();
        var points = new MemoryPointStore();
        var repo = BackupRepository.Create(new LocalRepositoryStorage(dir.Combine("repo")), new RepositoryCreateOptions { ChunkSize = Chunk, Key = RepositoryKey.FromPassphrase("both in memory") }, chunks, points);
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        var first = await BackupAsync(repo, disk);
        TestDisks.WriteMixed(disk, 2L << 20, seed: 3);
        var second = await BackupAsync(repo, disk, first);

        Assert.Equal([first.Id, second.Id], repo.ListRestorePoints("vm-1").Select(p => p.Id));
        Assert.Empty(Directory.EnumerateFileSystemEntries(dir.Combine("repo", "points")));
        Assert.Empty(Directory.EnumerateFiles(dir.Combine("repo", "chunks"), "*", SearchOption.AllDirectories));
        await repo.RestoreDiskAsync(second, "0", dir.Combine("second.img"));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("second.img")));

        repo.Forget(first);
        Assert.True(repo.CollectGarbage(TimeSpan.Zero).ChunksRemoved > 0);
        Assert.Equal([second.Id], repo.ListRestorePoints("vm-1").Select(p => p.Id));
        var report = await repo.VerifyAsync(readData: true);
        Assert.True(report.Ok);
        Assert.Single(report.PointsChecked);
    }
}
