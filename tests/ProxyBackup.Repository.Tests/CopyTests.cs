using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>repository copy (docs/repository-format.md, "Copies"): only what the target lacks, re-keyed, checked on arrival, resumable, never carrying damage over.</summary>
public sealed class CopyTests
{
    private const int Chunk = 128 << 10;

    private static BackupRepository NewRepository(TempDirectory dir, string name, string? passphrase) =>
        BackupRepository.Create(dir.Combine(name), new RepositoryCreateOptions { ChunkSize = Chunk, Key = passphrase is null ? null : RepositoryKey.FromPassphrase(passphrase) });

    private static async Task<RestorePoint> BackUpAsync(BackupRepository repo, string source, string disk, RestorePoint? parent = null)
    {
        using var writer = repo.StartRestorePoint(source, parent);
        writer.AddMetadata("vm.xml", System.Text.Encoding.UTF8.GetBytes($"<VM><NAME>{source}</NAME></VM>"));
        await writer.AddDiskAsync("0", disk);
        return writer.Commit();
    }

    [Fact]
    public async Task A_copy_into_a_repository_with_another_key_restores_bit_exact_after_the_first_is_deleted_and_a_second_copy_sends_only_what_changed()
    {
        using var dir = new TempDirectory();
        var a = NewRepository(dir, "a", "first key");
        var b = NewRepository(dir, "b", "second key");
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3L << 20);
        var first = await BackUpAsync(a, "vm-1", disk);
        var report = await RepositoryCopy.RunAsync(a, b, new CopySelection());
        Assert.Equal((1, 0), (report.Copied, report.AlreadyThere));
        var chunksAfterFirst = report.ChunksWritten;
        Assert.True(chunksAfterFirst > 0);

        var changed = TestDisks.Scribble(disk, 2, 4096, Chunk, seed: 9);
        var second = await BackUpAsync(a, "vm-1", disk, first);
        var again = await RepositoryCopy.RunAsync(a, b, new CopySelection());
        Assert.Equal((1, 1), (again.Copied, again.AlreadyThere));
        Assert.Equal(changed.Count, again.ChunksWritten);

        // The first repository is gone: the copy alone restores, verifies and knows its points.
        Directory.Delete(a.Root, recursive: true);
        var copy = BackupRepository.Open(b.Root, RepositoryKey.FromPassphrase("second key"));
        Assert.Equal([first.Id, second.Id], copy.ListRestorePoints("vm-1").Select(p => p.Id));
        Assert.Equal(first.Id, copy.LoadIndex("vm-1", second.Id).Parent);
        Assert.True((await copy.VerifyAsync(readData: true)).Ok);
        var restored = dir.Combine("restored.img");
        await copy.RestoreDiskAsync(copy.LoadIndex("vm-1", second.Id), "0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        Assert.Equal("<VM><NAME>vm-1</NAME></VM>", System.Text.Encoding.UTF8.GetString(copy.LoadMetadata(copy.LoadIndex("vm-1", second.Id), "vm.xml")));
    }

    [Fact]
    public async Task A_copy_stopped_midway_leaves_no_point_and_run_again_finishes_without_rewriting_what_arrived()
    {
        using var dir = new TempDirectory();
        var a = NewRepository(dir, "a", null);
        var arrived = new MemoryChunkStore();
        var b = BackupRepository.Create(new LocalRepositoryStorage(dir.Combine("b")), new RepositoryCreateOptions { ChunkSize = Chunk, Key = RepositoryKey.FromPassphrase("target key") }, arrived);
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 4L << 20);
        var point = await BackUpAsync(a, "vm-2", disk);
        using var stop = new CancellationTokenSource();
        arrived.AfterWrite = count => { if (count == 5) stop.Cancel(); };
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => RepositoryCopy.RunAsync(a, b, new CopySelection(), null, stop.Token));
        Assert.Empty(b.ListRestorePoints());
        var before = arrived.Count;
        Assert.InRange(before, 5, 5 + 8);

        arrived.AfterWrite = null;
        var resumed = await RepositoryCopy.RunAsync(a, b, new CopySelection());
        Assert.Equal(1, resumed.Copied);
        Assert.Equal(arrived.Count - before, resumed.ChunksWritten);
        var restored = dir.Combine("restored.img");
        await b.RestoreDiskAsync(b.LoadIndex("vm-2", point.Id), "0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
    }

    [Fact]
    public async Task A_point_with_a_damaged_chunk_is_not_copied_and_the_others_are()
    {
        using var dir = new TempDirectory();
        var a = NewRepository(dir, "a", null);
        var b = NewRepository(dir, "b", null);
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20, seed: 3);
        var damaged = await BackUpAsync(a, "vm-3", disk);
        var other = dir.Combine("other.img");
        TestDisks.WriteMixed(other, 2L << 20, seed: 4);
        var sound = await BackUpAsync(a, "vm-4", other);
        var victim = a.LoadManifest(damaged, "0").Chunks.First(c => !c.IsZero);
        var path = a.ChunkPath(victim);
        var bytes = File.ReadAllBytes(path);
        bytes[^1] ^= 0xff;
        File.WriteAllBytes(path, bytes);

        var report = await RepositoryCopy.RunAsync(a, b, new CopySelection());
        Assert.Equal(1, report.Copied);
        var failure = Assert.Single(report.Failed);
        Assert.StartsWith($"vm-3/{damaged.Id}", failure);
        Assert.Equal([sound.Id], b.ListRestorePoints().Select(p => p.Id));
    }

    [Fact]
    public async Task Copies_need_the_same_chunk_size_and_another_repository()
    {
        using var dir = new TempDirectory();
        var a = NewRepository(dir, "a", null);
        var other = BackupRepository.Create(dir.Combine("c"), new RepositoryCreateOptions { ChunkSize = Chunk * 2 });
        var size = await Assert.ThrowsAsync<RepositoryException>(() => RepositoryCopy.RunAsync(a, other, new CopySelection()));
        Assert.Contains($"--chunk-size {Chunk}", size.Message);
        var same = await Assert.ThrowsAsync<RepositoryException>(() => RepositoryCopy.RunAsync(a, BackupRepository.Open(a.Root, null), new CopySelection()));
        Assert.Contains("same repository", same.Message);
    }
}

