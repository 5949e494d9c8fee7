using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>A backup that fails gives back the space of the chunks it stored at once, never a chunk another writer relies on.</summary>
public class FailedWriterTests
{
    private const int Chunk = 64 << 10;

    /// <summary>A repository with a 2 MiB disk image beside it and, with <paramref name="commitOne"/>, a committed restore point of it.</summary>
    private static async Task<(BackupRepository Repo, string Disk, RestorePoint? Point)> RepositoryAsync(TempDirectory dir, bool commitOne)
    {
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        if (!commitOne) return (repo, disk, null);
        using var w = repo.StartRestorePoint("vm-1");
        await w.AddDiskAsync("0", disk);
        return (repo, disk, w.Commit());
    }

    private static IReadOnlySet<string> ChunkFiles(BackupRepository repo) =>
        Directory.EnumerateFiles(repo.ChunksDirectory(), "*", SearchOption.AllDirectories).Select(Path.GetFileName).OfType<string>().ToHashSet();

    [Fact]
    public async Task A_writer_disposed_without_a_commit_removes_the_chunks_it_stored_and_keeps_the_others()
    {
        using var dir = new TempDirectory();
        var (repo, _, kept) = await RepositoryAsync(dir, commitOne: true);
        var before = ChunkFiles(repo);

        // The same disk with changes: some chunks are shared with the committed point, some are new.
        TestDisks.WriteMixed(dir.Combine("changed.img"), 2L << 20, seed: 5);
        using (var failed = repo.StartRestorePoint("vm-1", kept))
        {
            var stats = await failed.AddDiskAsync("0", dir.Combine("changed.img"));
            Assert.True(stats.NewChunks > 0);
            Assert.True(ChunkFiles(repo).Count > before.Count);
        }   // the job failed after reading: no commit

        Assert.Equal(before, ChunkFiles(repo));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        Assert.Equal(0, repo.CollectGarbage(TimeSpan.Zero).ChunksRemoved);
    }

    [Fact]
    public async Task A_chunk_another_writer_reused_meanwhile_stays()
    {
        using var dir = new TempDirectory();
        var (repo, disk, _) = await RepositoryAsync(dir, commitOne: false);
        RestorePoint other;
        using (var failed = repo.StartRestorePoint("vm-1"))
        {
            await failed.AddDiskAsync("0", disk);
            // Another VM with the same data, committed while the first writer is still open: it
            // deduplicates against the first writer's chunks (touching them).
            using (var w = repo.StartRestorePoint("vm-2")) { await w.AddDiskAsync("0", disk); other = w.Commit(); }
        }

        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        await repo.RestoreDiskAsync(other, "0", dir.Combine("out.img"));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(dir.Combine("out.img")));
    }

    [Fact]
    public async Task A_failed_incremental_keeps_the_chunk_it_stored_again_for_its_parent()
    {
        // Healing is not undone: the parent references the chunk the failed backup stored again.
        using var dir = new TempDirectory();
        var (repo, disk, committed) = await RepositoryAsync(dir, commitOne: true);
        var parent = committed!;
        var lost = repo.LoadManifest(parent, "0").Chunks.First(c => !c.IsZero);
        File.Delete(repo.ChunkPath(lost));

        using (var failed = repo.StartRestorePoint("vm-1", parent)) await failed.AddDiskAsync("0", disk);

        Assert.True(repo.HasChunk(lost));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
    }
}
