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
        Assert.True((await reopened.VerifyAsync(readData: true)).Ok);
        var restored = dir.Combine("restored.img");
        await reopened.RestoreDiskAsync(second, "disk-0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        Assert.Throws<WrongKeyException>(() => BackupRepository.Open(Storage(location), RepositoryKey.FromPassphrase("not it")));
    }
}
