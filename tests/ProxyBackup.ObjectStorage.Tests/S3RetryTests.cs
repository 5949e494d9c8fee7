using ProxyBackup.Repository;
using ProxyBackup.Repository.Tests;
using ProxyBackup.TestSupport;

namespace ProxyBackup.ObjectStorage.Tests;

/// <summary>A busy S3 answers 503 SlowDown: the repository's calls are retried with backoff (Polly), and what still fails says so in one line.</summary>
public sealed class S3RetryTests
{
    /// <summary>The repository at <paramref name="location"/>, reached through the front.</summary>
    private static S3RepositoryStorage Through(ThrottlingFront front, string location, int retries)
    {
        var fronted = S3Location.Parse(location) with { Endpoint = new Uri($"http://127.0.0.1:{front.Port}") };
        return new S3RepositoryStorage(new S3Bucket(fronted, new S3Credentials(S3TestServer.AccessKeyId, S3TestServer.SecretAccessKey), retries, TimeSpan.FromMilliseconds(20)));
    }

    [S3Fact]
    public async Task A_backup_and_restore_through_an_S3_that_refuses_each_request_once_succeed_bit_exact()
    {
        using var dir = new TempDirectory();
        var location = S3TestServer.NewLocation();
        using var front = new ThrottlingFront(S3Location.Parse(location).Endpoint, times => times == 1);
        var storage = Through(front, location, retries: 6);
        var repo = BackupRepository.Create(storage, new RepositoryCreateOptions { ChunkSize = 256 << 10, Key = RepositoryKey.FromPassphrase("throttled") });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3L << 20);
        RestorePoint point;
        using (var writer = repo.StartRestorePoint("vm-3"))
        {
            await writer.AddDiskAsync("disk-0", disk);
            point = writer.Commit();
        }
        var restored = dir.Combine("restored.img");
        await repo.RestoreDiskAsync(point, "disk-0", restored);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        Assert.True(front.Refused > 10, $"only {front.Refused} requests were refused");
    }

    [S3Fact]
    public void An_S3_that_stays_busy_fails_the_operation_after_the_retries_with_the_key_and_the_reason()
    {
        var location = S3TestServer.NewLocation();
        BackupRepository.Create(S3RepositoryTests.Storage(location), new RepositoryCreateOptions());
        using var front = new ThrottlingFront(S3Location.Parse(location).Endpoint, _ => true);
        var storage = Through(front, location, retries: 2);
        var failed = Assert.Throws<IOException>(() => BackupRepository.Open(storage, null));
        Assert.Contains("config", failed.Message);
        Assert.Contains("after retries", failed.Message);
        Assert.Equal(3, front.Refused);
    }
}
