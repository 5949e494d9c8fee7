using System.Security.Cryptography;

namespace ProxyBackup.Repository.Tests;

/// <summary>Repositories written by an earlier version stay readable: open, list, verify, restore, bit for bit (Golden/README.md).</summary>
public class GoldenRepositoryTests
{
    private static string Golden(string name) => Path.Combine(AppContext.BaseDirectory, "Golden", name);

    [Theory]
    [InlineData("v1-plain", null)]
    [InlineData("v1-encrypted", "golden-v1")]
    public async Task A_format_1_repository_opens_verifies_and_restores_bit_for_bit(string name, string? passphrase)
    {
        using var dir = new ProxyBackup.TestSupport.TempDirectory();
        var path = dir.Combine(name);
        CopyDirectory(Golden(name), path);
        var repo = BackupRepository.Open(path, passphrase is null ? null : RepositoryKey.FromPassphrase(passphrase));

        var points = repo.ListRestorePoints("vm-7");
        Assert.Equal(2, points.Count);
        Assert.Equal(("full", "incremental"), (points[0].Tags["kind"], points[1].Tags["kind"]));
        Assert.Equal(points[0].Id, points[1].Parent);
        Assert.Equal("<VM><ID>7</ID><NAME>golden</NAME></VM>"u8.ToArray(), repo.LoadMetadata(points[1], "vm.xml"));
        var report = await repo.VerifyAsync(readData: true);
        Assert.True(report.Ok, string.Join("; ", report.DamagedChunks));
        Assert.True(report.ChunksChecked > 10);

        var expected = File.ReadAllLines(Golden("disk-sha256"));
        for (var i = 0; i < points.Count; i++)
        {
            var target = dir.Combine($"disk-{i}.raw");
            await repo.RestoreDiskAsync(points[i], "0", target);
            Assert.Equal(expected[i], Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(target))));
        }
    }

    [Fact]
    public void The_encrypted_golden_repository_refuses_a_wrong_passphrase()
    {
        using var dir = new ProxyBackup.TestSupport.TempDirectory();
        CopyDirectory(Golden("v1-encrypted"), dir.Combine("repo"));
        Assert.Throws<WrongKeyException>(() => BackupRepository.Open(dir.Combine("repo"), RepositoryKey.FromPassphrase("not-it")));
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }
}
