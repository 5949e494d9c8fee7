using ProxyBackup.ObjectStorage;
using ProxyBackup.Repository;
using ProxyBackup.Repository.Tests;
using ProxyBackup.TestSupport;

namespace ProxyBackup.ObjectStorage.Tests;

/// <summary>A repository in a bucket of a real S3 server (<see cref="S3TestServer"/>): the same format and guarantees as in a directory.</summary>
public sealed class S3RepositoryTests
{
    private const int Chunk = 256 << 10;

    internal static S3RepositoryStorage Storage(string location) =>
        new(S3Location.Parse(location), new S3Credentials(S3TestServer.AccessKeyId, S3TestServer.SecretAccessKey));

    [S3Fact]
    public async Task An_encrypted_repository_on_S3_backs_up_verifies_and_restores_bit_exact_and_its_incremental_stores_only_changes()
    {
        using var dir = new TempDirectory();
        var location = S3TestServer.NewLocation();
        var key = RepositoryKey.FromPassphrase("s3 passphrase");
        BackupRepository.Create(Storage(location), new RepositoryCreateOptions { ChunkSize = Chunk, Key = key });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 5L << 20);

        // Opened again from nothing but the location: config and keys come from the bucket.
        var repo = BackupRepository.Open(Storage(location), key);
        RestorePoint first;
        using (var writer = repo.StartRestorePoint("vm-7"))
        {
            await writer.AddDiskAsync("disk-0", disk);
            first = writer.Commit();
        }
        var changed = TestDisks.Scribble(disk, 3, 4096, Chunk, seed: 5);
        RestorePoint second;
        DiskBackupStats stats;
        using (var writer = repo.StartRestorePoint("vm-7", first))
        {
            stats = await writer.AddDiskAsync("disk-0", disk);
            second = writer.Commit();
        }
        Assert.Equal(changed.Count, stats.NewChunks);

        var reopened = BackupRepository.Open(Storage(location), key);
        Assert.Equal([first.Id, second.Id], reopened.ListRestorePoints("vm-7").Select(p => p.Id));
        var verified = await reopened.VerifyAsync(readData: true);
        Assert.True(verified.Ok);
        Assert.Equal(2, verified.RestorePointsChecked);
        Assert.Equal(["vm-7"], reopened.ListRestorePoints().Select(p => p.Source).Distinct());
        await RestoresAsync(reopened, second, disk, dir);
        Assert.Throws<WrongKeyException>(() => BackupRepository.Open(Storage(location), RepositoryKey.FromPassphrase("not it")));
    }

    private static async Task<RestorePoint> BackUpAsync(BackupRepository repo, string source, string disk)
    {
        using var writer = repo.StartRestorePoint(source);
        await writer.AddDiskAsync("disk-0", disk);
        return writer.Commit();
    }

    /// <summary>The location's bucket, as the repository reaches it: a test looks at or damages its objects.</summary>
    private static S3Bucket Bucket(string location) => new(S3Location.Parse(location), new S3Credentials(S3TestServer.AccessKeyId, S3TestServer.SecretAccessKey));

    /// <summary>The chunk objects under the location, in one listing of the prefix.</summary>
    private static int ChunkObjects(string location) => Bucket(location).List("chunks/").Count();

    /// <summary>Restores the point's disk and checks it is the disk as it was backed up.</summary>
    private static async Task RestoresAsync(BackupRepository repo, RestorePoint point, string disk, TempDirectory dir)
    {
        var restored = dir.Combine($"restored-{point.Id}.img");
        await repo.RestoreDiskAsync(point, "disk-0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
    }

    [S3Fact]
    public async Task GC_on_S3_beside_a_backup_keeps_the_chunks_the_backup_reuses_and_then_removes_what_no_point_references()
    {
        using var dir = new TempDirectory();
        var location = S3TestServer.NewLocation();
        var repo = BackupRepository.Create(Storage(location), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3L << 20);
        var first = await BackUpAsync(repo, "vm-1", disk);
        var stored = ChunkObjects(location);
        Assert.True(stored > 5);
        repo.Forget(first);

        // A second VM with the same content: every chunk is reused, none stored again, while a GC runs beside.
        using (var writer = repo.StartRestorePoint("vm-2"))
        {
            var stats = await writer.AddDiskAsync("disk-0", disk);
            Assert.Equal(0, stats.NewChunks);
            var beside = repo.CollectGarbage(grace: TimeSpan.Zero);
            Assert.Equal(0, beside.ChunksRemoved);
            Assert.Equal(stored, beside.ChunksInGrace);
            var second = writer.Commit();
            await RestoresAsync(repo, second, disk, dir);
            repo.Forget(second);
        }
        // S3 tells times to the second, taken as its end: what was touched in this second is not older than a GC now.
        await Task.Delay(TimeSpan.FromSeconds(1.1));
        var after = repo.CollectGarbage(grace: TimeSpan.Zero);
        Assert.Equal(stored, after.ChunksRemoved);
        Assert.Equal(0, ChunkObjects(location));
    }

    [S3Fact]
    public async Task A_backup_whose_reused_chunks_a_sweep_removed_meanwhile_is_not_committed_and_the_next_one_stores_them_anew()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(Storage(S3TestServer.NewLocation()), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20);
        repo.Forget(await BackUpAsync(repo, "vm-1", disk));
        using (var writer = repo.StartRestorePoint("vm-2"))
        {
            await writer.AddDiskAsync("disk-0", disk);
            // A sweep that judged the chunks by a listing older than the touches (its look and its delete straddled them).
            var swept = repo.Chunks.Sweep(new HashSet<ChunkId>(), DateTimeOffset.UtcNow.AddHours(1), CancellationToken.None);
            Assert.True(swept.Removed > 0);
            var refused = Assert.Throws<RepositoryException>(() => writer.Commit());
            Assert.Contains("not committed", refused.Message);
        }
        Assert.Empty(repo.ListRestorePoints("vm-2"));
        var again = await BackUpAsync(repo, "vm-2", disk);
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        await RestoresAsync(repo, again, disk, dir);
    }

    [S3Fact]
    public async Task A_damaged_chunk_object_is_set_aside_by_verify_and_the_next_backup_stores_it_again_so_the_older_point_restores_again()
    {
        using var dir = new TempDirectory();
        var location = S3TestServer.NewLocation();
        var repo = BackupRepository.Create(Storage(location), new RepositoryCreateOptions { ChunkSize = Chunk });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20, seed: 8);
        var first = await BackUpAsync(repo, "vm-5", disk);
        var victim = repo.LoadManifest(first, "disk-0").Chunks.First(c => !c.IsZero).ToString();
        var bucket = Bucket(location);
        var key = $"chunks/{victim[..2]}/{victim}";
        var damaged = bucket.Get(key)!;
        damaged[^1] ^= 0xff;
        bucket.Put(key, damaged, damaged.Length);
        // Verify finds it and sets it aside as NAME.bad (judged there first: a sound copy would have stayed).
        Assert.False((await repo.VerifyAsync(readData: true)).Ok);
        Assert.Null(bucket.Head(key));
        Assert.NotNull(bucket.Head(key + ".bad"));

        // The next backup of that content finds the chunk absent and stores it again; the older point is whole again.
        using (var writer = repo.StartRestorePoint("vm-5", first))
        {
            var stats = await writer.AddDiskAsync("disk-0", disk);
            Assert.Equal(1, stats.NewChunks);
            writer.Commit();
        }
        Assert.NotNull(bucket.Head(key));
        Assert.True((await repo.VerifyAsync(readData: true)).Ok);
        await RestoresAsync(repo, first, disk, dir);
    }

    [S3TwoAccountsFact]
    public async Task A_key_that_may_only_read_opens_the_repository_read_only_and_restores_from_it_without_writing()
    {
        var (readerKey, readerSecret) = S3TestServer.ReaderCredentials()!.Value;
        using var dir = new TempDirectory();
        var location = S3TestServer.NewLocation();
        var repo = BackupRepository.Create(Storage(location), new RepositoryCreateOptions { ChunkSize = Chunk, Key = RepositoryKey.FromPassphrase("dr site") });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 2L << 20, seed: 9);
        var point = await BackUpAsync(repo, "vm-6", disk);
        var bucket = S3Location.Parse(location).Bucket;
        var policy = $$"""
            {"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["arn:aws:iam:::user/reader"]},
             "Action":["s3:GetObject","s3:ListBucket"],"Resource":["arn:aws:s3:::{{bucket}}","arn:aws:s3:::{{bucket}}/*"]}]}
            """;
        using (var owner = new Amazon.S3.AmazonS3Client(S3TestServer.AccessKeyId, S3TestServer.SecretAccessKey,
                   new Amazon.S3.AmazonS3Config { ServiceURL = S3Location.Parse(location).Endpoint.ToString(), ForcePathStyle = true, AuthenticationRegion = "us-east-1" }))
            await owner.PutBucketPolicyAsync(new Amazon.S3.Model.PutBucketPolicyRequest { BucketName = bucket, Policy = policy });

        var readOnly = BackupRepository.Open(new S3RepositoryStorage(S3Location.Parse(location), new S3Credentials(readerKey, readerSecret)), RepositoryKey.FromPassphrase("dr site"));
        Assert.True(readOnly.ReadOnly);
        Assert.Equal([point.Id], readOnly.ListRestorePoints("vm-6").Select(p => p.Id));
        Assert.True((await readOnly.VerifyAsync(readData: true)).Ok);
        await RestoresAsync(readOnly, point, disk, dir);
        var refused = Assert.Throws<RepositoryException>(() => readOnly.StartRestorePoint("vm-6"));
        Assert.Contains("read-only", refused.Message);
        Assert.Empty(repo.Storage.List("locks"));
    }

    [S3Fact]
    public void Locks_on_S3_exclude_as_on_disk_and_a_lock_not_refreshed_for_an_hour_is_stale()
    {
        var repo = BackupRepository.Create(Storage(S3TestServer.NewLocation()), new RepositoryCreateOptions { ChunkSize = Chunk });
        using (RepositoryLock.Acquire(repo, exclusive: true, "retention"))
        {
            var refused = Assert.Throws<RepositoryLockedException>(() => RepositoryLock.Acquire(repo, exclusive: false, "backup", TimeSpan.Zero));
            Assert.Contains("exclusively by retention", refused.Message);
        }
        using (RepositoryLock.Acquire(repo, exclusive: false, "backup", TimeSpan.Zero)) { }

        var gone = new RepositoryLock.LockInfo("another-proxy", 4242, 1, "backup", DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(-1));
        repo.Storage.Write("locks/exclusive-00000000000000aa", System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(gone));
        using (RepositoryLock.Acquire(repo, exclusive: false, "backup", TimeSpan.Zero)) { }
        Assert.DoesNotContain("exclusive-00000000000000aa", repo.Storage.List("locks"));
    }
}
