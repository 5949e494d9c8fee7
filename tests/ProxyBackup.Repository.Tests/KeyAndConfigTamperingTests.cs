using System.Text.Json.Nodes;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>An encrypted repository whose keys/ or config was damaged or edited is refused with what to put back, never read as plain, never a crash.</summary>
public class KeyAndConfigTamperingTests
{
    private static string NewEncryptedRepository(TempDirectory dir)
    {
        var path = dir.Combine("repo");
        BackupRepository.Create(path, new RepositoryCreateOptions { ChunkSize = 64 << 10, Key = RepositoryKey.FromPassphrase("pw") });
        return path;
    }

    private static void EditJson(string file, Action<JsonObject> edit)
    {
        var json = JsonNode.Parse(File.ReadAllText(file))!.AsObject();
        edit(json);
        File.WriteAllText(file, json.ToJsonString());
    }

    [Fact]
    public void A_config_that_lost_its_encryption_entry_is_refused_with_or_without_the_key()
    {
        using var dir = new TempDirectory();
        var path = NewEncryptedRepository(dir);
        EditJson(Path.Combine(path, "config"), json => json["encryption"] = null);
        var e = Assert.Throws<CorruptDataException>(() => BackupRepository.Open(path, null));
        Assert.Contains("not encrypted, but it has key files", e.Message, StringComparison.Ordinal);
        Assert.Throws<CorruptDataException>(() => BackupRepository.Open(path, RepositoryKey.FromPassphrase("pw")));
    }

    [Theory]
    [InlineData("iterations 0")]
    [InlineData("iterations huge")]
    [InlineData("not JSON")]
    [InlineData("salt not base64")]
    public void A_damaged_key_file_is_named(string damage)
    {
        using var dir = new TempDirectory();
        var path = NewEncryptedRepository(dir);
        var keyFile = Directory.GetFiles(Path.Combine(path, "keys")).Single();
        switch (damage)
        {
            case "iterations 0": EditJson(keyFile, k => k["iterations"] = 0); break;
            case "iterations huge": EditJson(keyFile, k => k["iterations"] = int.MaxValue); break;
            case "not JSON": File.WriteAllText(keyFile, "{ half a key"); break;
            case "salt not base64": EditJson(keyFile, k => k["salt"] = "***"); break;
        }
        var e = Assert.Throws<CorruptDataException>(() => BackupRepository.Open(path, RepositoryKey.FromPassphrase("pw")));
        Assert.Contains($"keys/{Path.GetFileName(keyFile)}", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_encrypted_repository_without_key_files_says_so()
    {
        using var dir = new TempDirectory();
        var path = NewEncryptedRepository(dir);
        Directory.Delete(Path.Combine(path, "keys"), recursive: true);
        var e = Assert.Throws<CorruptDataException>(() => BackupRepository.Open(path, RepositoryKey.FromPassphrase("pw")));
        Assert.Contains("has no key files", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_right_passphrase_still_opens_and_a_wrong_one_is_told_apart_from_damage()
    {
        using var dir = new TempDirectory();
        var path = NewEncryptedRepository(dir);
        Assert.True(BackupRepository.Open(path, RepositoryKey.FromPassphrase("pw")).Config.Encrypted);
        Assert.IsType<WrongKeyException>(Assert.ThrowsAny<RepositoryException>(() => BackupRepository.Open(path, RepositoryKey.FromPassphrase("nope"))));
    }
}
