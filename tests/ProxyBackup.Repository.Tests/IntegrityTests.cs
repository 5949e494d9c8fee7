using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>Damage of every kind is found by verify and refused by restore, naming the restore points hit.</summary>
public class IntegrityTests
{
    private const int Chunk = 64 << 10;

    private static async Task<(BackupRepository Repo, RestorePoint A, RestorePoint B, string Disk)> TwoPointsAsync(TempDirectory dir, RepositoryKey? key = null)
    {
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk, Key = key });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        RestorePoint a, b;
        using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", disk); a = w.Commit(); }
        var other = dir.Combine("other.img");
        TestDisks.WriteMixed(other, 1L << 20, seed: 77);
        using (var w = repo.StartRestorePoint("vm-2")) { await w.AddDiskAsync("0", other); b = w.Commit(); }
        return (repo, a, b, disk);
    }

    private static string SomeChunkFileOf(BackupRepository repo, RestorePoint point) =>
        repo.ChunkPath(repo.LoadManifest(point, "0").Chunks.Last(c => !c.IsZero));

    public static TheoryData<string> Damages => ["flip", "truncate", "delete"];

    [Theory]
    [MemberData(nameof(Damages))]
    public async Task Damaged_chunk_is_found_by_verify_and_by_restore(string damage)
    {
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir);
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        var file = SomeChunkFileOf(repo, a);
        switch (damage)
        {
            case "flip":
                var bytes = File.ReadAllBytes(file);
                bytes[bytes.Length / 2] ^= 0x40;
                File.WriteAllBytes(file, bytes);
                break;
            case "truncate":
                File.WriteAllBytes(file, File.ReadAllBytes(file)[..10]);
                break;
            default:
                File.Delete(file);
                break;
        }
        var report = await repo.VerifyAsync(readData: true);
        Assert.False(report.Ok);
        Assert.True(report.DamagedRestorePoints.ContainsKey($"vm-1/{a.Id}"));
        Assert.False(report.DamagedRestorePoints.ContainsKey($"vm-2/{b.Id}"));
        Assert.Single(report.DamagedChunks);

        // The read-data verify moved the damaged file aside, so the quick check sees it missing too.
        Assert.Equal(damage != "delete", File.Exists(file + LocalChunkStore.BadSuffix));
        var quick = await repo.VerifyAsync(readData: false);
        Assert.False(quick.Ok);

        await Assert.ThrowsAsync<CorruptDataException>(() => repo.RestoreDiskAsync(a, "0", dir.Combine("out.img")));
        Assert.False(File.Exists(dir.Combine("out.img")), "a failed restore must not leave a half-written file that looks like a disk");
        await repo.RestoreDiskAsync(b, "0", dir.Combine("fine.img"));
    }

    [Fact(Timeout = 120_000)]
    public async Task Verify_reads_on_past_many_damaged_chunks_and_names_them_all()
    {
        // Each damaged compressed chunk fails while its worker holds a borrowed buffer; verify must
        // give it back and go on (a lost buffer would stall the other workers after a few).
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir);
        var shared = repo.LoadManifest(b, "0").Chunks.ToHashSet();
        var damaged = repo.LoadManifest(a, "0").Chunks.Where(c => !c.IsZero && !shared.Contains(c)).Distinct().ToList();
        Assert.True(damaged.Count > 2 * Environment.ProcessorCount + 2);
        foreach (var chunk in damaged) File.WriteAllBytes(repo.ChunkPath(chunk), File.ReadAllBytes(repo.ChunkPath(chunk))[..10]);

        var report = await repo.VerifyAsync(readData: true);

        Assert.Equal(damaged.Select(c => c.ToString()).Order(StringComparer.Ordinal), report.DamagedChunks);
        Assert.True(report.DamagedRestorePoints.ContainsKey($"vm-1/{a.Id}"));
        Assert.False(report.DamagedRestorePoints.ContainsKey($"vm-2/{b.Id}"));
    }

    [Fact]
    public async Task Verify_subsets_read_each_chunk_in_exactly_one_part_and_find_the_damage_in_its_part()
    {
        using var dir = new TempDirectory();
        var (repo, a, _, _) = await TwoPointsAsync(dir);
        var damaged = repo.LoadManifest(a, "0").Chunks.First(c => !c.IsZero);
        var bytes = File.ReadAllBytes(repo.ChunkPath(damaged));
        bytes[^1] ^= 0x20;
        File.WriteAllBytes(repo.ChunkPath(damaged), bytes);
        Assert.Throws<ArgumentException>(() => VerifySubset.Parse("8/7"));

        // The part that holds the damaged chunk goes last: it moves the chunk aside, and a later part
        // would then report it missing.
        var damagedPart = Enumerable.Range(1, 4).Single(part => new VerifySubset(part, 4).Contains(damaged));
        var read = 0;
        foreach (var part in Enumerable.Range(1, 4).Where(p => p != damagedPart).Append(damagedPart))
        {
            var report = await repo.VerifyAsync(readData: true, subset: new VerifySubset(part, 4));
            read += report.ChunksRead;
            Assert.True(report.ChunksRead < report.ChunksChecked);
            Assert.Equal(part != damagedPart, report.Ok);
        }
        // Together the parts read every chunk once.
        Assert.Equal((await repo.VerifyAsync(readData: false)).ChunksChecked, read);
    }

    [Fact]
    public async Task Damaged_manifest_index_and_encrypted_chunk_are_found()
    {
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir, RepositoryKey.FromPassphrase("pw"));
        var chunk = SomeChunkFileOf(repo, b);
        var bytes = File.ReadAllBytes(chunk);
        bytes[^1] ^= 1; // the GCM tag
        File.WriteAllBytes(chunk, bytes);
        var manifest = Path.Combine(repo.Root, "points", "vm-1", a.Id, "disk-0.manifest");
        var m = File.ReadAllBytes(manifest);
        m[40] ^= 1;
        File.WriteAllBytes(manifest, m);
        var report = await repo.VerifyAsync(readData: true);
        Assert.Contains(report.DamagedRestorePoints[$"vm-2/{b.Id}"], r => r.Contains("does not decrypt", StringComparison.Ordinal));
        Assert.Contains(report.DamagedRestorePoints[$"vm-1/{a.Id}"], r => r.Contains("disk-0.manifest", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_backup_that_fails_leaves_no_restore_point_and_the_next_one_works()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 4L << 20);
        using var cts = new CancellationTokenSource();
        using (var w = repo.StartRestorePoint("vm-1"))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => w.AddDiskAsync("0", disk, new CancelAfterFirst(cts), cts.Token));
        }
        Assert.Empty(repo.ListRestorePoints());
        Assert.Empty(Directory.EnumerateDirectories(Path.Combine(repo.Root, "points", "vm-1")));
        using (var w = repo.StartRestorePoint("vm-1")) { await w.AddDiskAsync("0", disk); w.Commit(); }
        Assert.Single(repo.ListRestorePoints());
        Assert.True((await repo.VerifyAsync(true)).Ok);
        Assert.Equal(0, repo.CollectGarbage(TimeSpan.Zero).ChunksRemoved);
    }

    [Theory]
    [InlineData("flip")]
    [InlineData("truncate")]
    public async Task A_full_backup_replaces_a_damaged_chunk_it_would_reuse_and_the_old_points_restore_again(string damage)
    {
        using var dir = new TempDirectory();
        var (repo, a, _, disk) = await TwoPointsAsync(dir);
        var file = SomeChunkFileOf(repo, a);
        var bytes = File.ReadAllBytes(file);
        if (damage == "flip") bytes[bytes.Length / 2] ^= 0x40;
        else bytes = bytes[..10];
        File.WriteAllBytes(file, bytes);   // bit rot nobody has seen yet: no verify ran

        DiskBackupStats stats;
        using (var w = repo.StartRestorePoint("vm-1")) { stats = await w.AddDiskAsync("0", disk); w.Commit(); }

        Assert.Equal(1, stats.Repaired);
        Assert.True(File.Exists(file + LocalChunkStore.BadSuffix));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        var restored = dir.Combine("a.img");
        await repo.RestoreDiskAsync(a, "0", restored);   // the point written before the damage
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
    }

    [Fact]
    public async Task An_incremental_stores_again_a_chunk_that_went_missing_instead_of_referencing_it()
    {
        using var dir = new TempDirectory();
        var (repo, a, _, disk) = await TwoPointsAsync(dir);
        var file = SomeChunkFileOf(repo, a);
        File.Delete(file);

        RestorePoint c;
        DiskBackupStats stats;
        using (var w = repo.StartRestorePoint("vm-1", a)) { stats = await w.AddDiskAsync("0", disk); c = w.Commit(); }

        Assert.Equal(0, stats.Changed);   // nothing changed on the disk ...
        Assert.Equal(1, stats.NewChunks); // ... yet the missing chunk is stored again
        Assert.True(File.Exists(file));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        foreach (var point in new[] { a, c })
        {
            var restored = dir.Combine($"{point.Id}.img");
            await repo.RestoreDiskAsync(point, "0", restored);
            Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        }
    }

    [Fact]
    public async Task Verify_moves_a_damaged_chunk_aside_and_the_next_incremental_heals_every_point()
    {
        using var dir = new TempDirectory();
        var (repo, a, _, disk) = await TwoPointsAsync(dir);
        var file = SomeChunkFileOf(repo, a);
        var bytes = File.ReadAllBytes(file);
        bytes[^1] ^= 0x01;
        File.WriteAllBytes(file, bytes);
        // Chunks rot when they are old: the one moved aside must not keep its old time, or GC frees it at once.
        File.SetLastWriteTimeUtc(file, DateTime.UtcNow.AddDays(-30));
        var report = await repo.VerifyAsync(readData: true);
        Assert.False(report.Ok);
        Assert.Contains(report.DamagedRestorePoints[$"vm-1/{a.Id}"], why => why.Contains("Moved aside", StringComparison.Ordinal));
        repo.CollectGarbage();
        Assert.True(File.Exists(file + LocalChunkStore.BadSuffix), "GC freed the evidence within its grace");

        using (var w = repo.StartRestorePoint("vm-1", a)) { await w.AddDiskAsync("0", disk); w.Commit(); }

        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        var restored = dir.Combine("a.img");
        await repo.RestoreDiskAsync(a, "0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        // The moved-aside copy is evidence for GC's grace, then freed.
        Assert.True(File.Exists(file + LocalChunkStore.BadSuffix));
        repo.CollectGarbage(TimeSpan.Zero);
        Assert.False(File.Exists(file + LocalChunkStore.BadSuffix));
    }

    [Fact]
    public async Task A_chunk_found_sound_once_aside_goes_back_and_is_not_reported()
    {
        // What verify meets when a backup stored the chunk again between verify's read and its move.
        using var dir = new TempDirectory();
        var (repo, a, _, _) = await TwoPointsAsync(dir);
        var file = SomeChunkFileOf(repo, a);
        var id = repo.LoadManifest(a, "0").Chunks.Last(c => !c.IsZero);
        var chunks = repo.StoredChunks;
        using var codec = chunks.NewCodec();
        Assert.Equal(ChunkQuarantine.SoundNow, chunks.Quarantine(id, codec));
        Assert.True(File.Exists(file));
        Assert.False(File.Exists(file + LocalChunkStore.BadSuffix));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
    }

    [Fact]
    public async Task A_point_whose_index_is_damaged_stops_no_listing_retention_or_gc_and_keeps_its_chunks_until_forgotten()
    {
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir);
        var onlyB = repo.LoadManifest(b, "0").Chunks.Where(c => !c.IsZero).Except(repo.LoadManifest(a, "0").Chunks).Distinct().ToList();
        Assert.NotEmpty(onlyB);
        File.WriteAllText(Path.Combine(repo.Root, "points", "vm-2", b.Id, "index"), "{ damaged");

        var scan = repo.ScanRestorePoints();
        Assert.Equal([a.Id], scan.Points.Select(p => p.Id));
        Assert.Equal(("vm-2", b.Id), (scan.Unreadable.Single().Source, scan.Unreadable.Single().Id));
        repo.ApplyRetention(new RetentionPolicy { KeepLast = 1 }, dryRun: false);
        Assert.Single(repo.ScanRestorePoints().Unreadable); // retention leaves what it cannot read
        var stats = repo.Stats();
        Assert.Equal((1, b.Id), (stats.RestorePoints, stats.Unreadable.Single().Id));   // counted apart, not silently left out
        repo.CollectGarbage(TimeSpan.Zero);
        Assert.All(onlyB, c => Assert.True(repo.HasChunk(c), $"GC removed chunk {c} of the point whose index is damaged"));
        Assert.False((await repo.VerifyAsync(readData: false)).Ok);

        repo.ForgetPoint("vm-2", b.Id);
        Assert.Empty(repo.ScanRestorePoints().Unreadable);
        repo.CollectGarbage(TimeSpan.Zero);
        Assert.All(onlyB, c => Assert.False(repo.HasChunk(c)));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
    }

    [Fact]
    public async Task Gc_removes_nothing_when_a_point_it_cannot_read_has_a_damaged_manifest_and_says_what_to_do()
    {
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir);
        var pointDir = Path.Combine(repo.Root, "points", "vm-2", b.Id);
        File.WriteAllText(Path.Combine(pointDir, "index"), "{ damaged");
        File.WriteAllBytes(Path.Combine(pointDir, "disk-0.manifest"), [1, 2, 3]);
        var chunkFiles = Directory.GetFiles(Path.Combine(repo.Root, "chunks"), "*", SearchOption.AllDirectories).Length;
        var e = Assert.Throws<RepositoryException>(() => repo.CollectGarbage(TimeSpan.Zero));
        Assert.Contains("GC removed nothing", e.Message, StringComparison.Ordinal);
        Assert.Contains($"--source vm-2 --point", e.Message, StringComparison.Ordinal);
        Assert.Equal(chunkFiles, Directory.GetFiles(Path.Combine(repo.Root, "chunks"), "*", SearchOption.AllDirectories).Length);
        Assert.Throws<RepositoryException>(() => repo.ForgetPoint("vm-2", "../vm-1"));
    }

    public static TheoryData<string> Edits => ["index disk size", "index format", "config chunk size"];

    [Theory]
    [MemberData(nameof(Edits))]
    public async Task Verify_and_restore_refuse_an_index_or_config_that_disagrees_with_the_manifests(string edit)
    {
        using var dir = new TempDirectory();
        var (repo, a, b, _) = await TwoPointsAsync(dir);
        var indexFile = Path.Combine(repo.Root, "points", "vm-1", a.Id, "index");
        var configFile = Path.Combine(repo.Root, "config");
        static void Replace(string file, string from, string to)
        {
            var text = File.ReadAllText(file);
            Assert.Contains(from, text, StringComparison.Ordinal);
            File.WriteAllText(file, text.Replace(from, to, StringComparison.Ordinal));
        }
        switch (edit)
        {
            case "index disk size": Replace(indexFile, $"\"size\":{2L << 20}", $"\"size\":{3L << 20}"); break;
            case "index format": Replace(indexFile, "\"format\":1", "\"format\":99"); break;
            default: Replace(configFile, $"\"chunk_size\": {Chunk}", $"\"chunk_size\": {2 * Chunk}"); break;
        }
        var reopened = BackupRepository.Open(repo.Root, null);

        var report = await reopened.VerifyAsync(readData: false);

        Assert.True(report.DamagedRestorePoints.ContainsKey($"vm-1/{a.Id}"), edit);
        Assert.Equal(edit == "config chunk size", report.DamagedRestorePoints.ContainsKey($"vm-2/{b.Id}"));
        await Assert.ThrowsAnyAsync<RepositoryException>(async () =>
            await reopened.RestoreDiskAsync(reopened.LoadIndex("vm-1", a.Id), "0", dir.Combine("out.img")));
        Assert.False(File.Exists(dir.Combine("out.img")));
    }

    [Fact]
    public async Task Verify_reading_data_reports_a_manifest_that_needs_a_chunk_at_another_length_than_it_holds()
    {
        // Restore refuses such a chunk ("holds N bytes where the manifest needs M"); a verify that
        // only checks names and hashes would call the point sound. A manifest with its checksum
        // right in the index, as only a faulty writer makes one.
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("short.img");
        var content = new byte[Chunk + Chunk / 2];
        new Random(3).NextBytes(content);
        File.WriteAllBytes(disk, content);
        RestorePoint point;
        using (var w = repo.StartRestorePoint("vm-3")) { await w.AddDiskAsync("0", disk); point = w.Commit(); }
        var manifest = repo.LoadManifest(point, "0");
        var faulty = new Manifest(manifest.DiskSize, manifest.ChunkSize, [manifest.Chunks[0], manifest.Chunks[0]]).ToBytes();
        var pointDir = Path.Combine(repo.Root, "points", "vm-3", point.Id);
        var oldSum = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(pointDir, "disk-0.manifest"))));
        File.WriteAllBytes(Path.Combine(pointDir, "disk-0.manifest"), faulty);
        var index = File.ReadAllText(Path.Combine(pointDir, "index"));
        Assert.Contains(oldSum, index, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(pointDir, "index"), index.Replace(oldSum, Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(faulty)), StringComparison.Ordinal));

        Assert.True((await repo.VerifyAsync(readData: false)).Ok);
        var report = await repo.VerifyAsync(readData: true);

        var why = Assert.Single(report.DamagedRestorePoints[$"vm-3/{point.Id}"]);
        Assert.Contains($"holds {Chunk} bytes where a manifest needs {Chunk / 2}", why, StringComparison.Ordinal);
        Assert.Empty(report.DamagedChunks);
        await Assert.ThrowsAnyAsync<RepositoryException>(async () => await repo.RestoreDiskAsync(repo.LoadIndex("vm-3", point.Id), "0", dir.Combine("out.img")));
    }

    private sealed class CancelAfterFirst(CancellationTokenSource cts) : IProgress<TransferProgress>
    {
        public void Report(TransferProgress value) => cts.Cancel();
    }
}
