using ProxyBackup.TestSupport;
using static ProxyBackup.Cli.Tests.ApplianceBinaries;

namespace ProxyBackup.Cli.Tests;

/// <summary>An off-site copy on a real S3 server, through the CLI: copied, the first repository deleted, the copy alone restores, verifies and rebuilds the catalog.</summary>
public sealed class S3CopyTests
{
    private static Dictionary<string, string> S3Environment(string passphrase, string targetPassphrase) => new()
    {
        ["AWS_ACCESS_KEY_ID"] = S3TestServer.AccessKeyId,
        ["AWS_SECRET_ACCESS_KEY"] = S3TestServer.SecretAccessKey,
        ["PROXYBACKUP_PASSPHRASE"] = passphrase,
        ["PROXYBACKUP_TO_PASSPHRASE"] = targetPassphrase,
    };

    private static void Succeeded((int Code, string Output, string Error) run) => Assert.True(run.Code == 0, $"exit {run.Code}: {run.Error}{run.Output}");

    [S3Fact]
    public async Task A_copy_on_S3_alone_restores_bit_exact_verifies_and_rebuilds_the_catalog_after_the_first_repository_is_deleted()
    {
        using var dir = new TempDirectory();
        var first = dir.Combine("first");
        var offsite = S3TestServer.NewLocation("offsite");
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 9L << 20);
        var local = S3Environment("first passphrase", "offsite passphrase");
        Succeeded(await ProxybackupAsync(local, "repository", "init", "--repo", first, "--encrypt"));
        Succeeded(await ProxybackupAsync(local, "repository", "backup", "--repo", first, "--source", "vm-1", "--disk", $"0={disk}"));
        // The target is made with its own passphrase (the one the copy will name with --to's variable).
        Succeeded(await ProxybackupAsync(S3Environment("offsite passphrase", ""), "repository", "init", "--repo", offsite, "--encrypt"));

        var copy = await ProxybackupAsync(local, "repository", "copy", "--repo", first, "--to", offsite);
        Succeeded(copy);
        Assert.Contains("Copied 1 restore point(s)", copy.Output);
        TestDisks.Scribble(disk, 2, 4096, 4 << 20, seed: 2);
        Succeeded(await ProxybackupAsync(local, "repository", "backup", "--repo", first, "--source", "vm-1", "--disk", $"0={disk}"));
        var again = await ProxybackupAsync(local, "repository", "copy", "--repo", first, "--to", offsite, "--source", "vm-1");
        Succeeded(again);
        Assert.Contains("Copied 1 restore point(s)", again.Output);
        Assert.Contains("(1 already there)", again.Output);

        Directory.Delete(first, recursive: true);
        var offsiteOnly = S3Environment("offsite passphrase", "");
        var verify = await ProxybackupAsync(offsiteOnly, "repository", "verify", "--repo", offsite, "--read-data");
        Succeeded(verify);
        Assert.Contains("No damage found", verify.Output);
        var restored = dir.Combine("restored.img");
        Succeeded(await ProxybackupAsync(offsiteOnly, "repository", "restore", "--repo", offsite, "--source", "vm-1", "--point", "latest", "--disk", "0", "--to", restored));
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));
        var rebuild = await ProxybackupAsync(offsiteOnly, "catalog", "rebuild", "--repo", offsite, "--catalog", dir.Combine("catalog.db"));
        Succeeded(rebuild);
        Assert.True(rebuild.Output.Contains("Indexed 2 restore point(s)", StringComparison.Ordinal), rebuild.Output + rebuild.Error);
    }

    [S3Fact]
    public async Task An_S3_repository_without_credentials_is_one_line_that_names_the_variables()
    {
        var run = await ProxybackupAsync(new Dictionary<string, string> { ["AWS_ACCESS_KEY_ID"] = "", ["AWS_SECRET_ACCESS_KEY"] = "" },
            "repository", "list", "--repo", S3TestServer.NewLocation());
        Assert.Equal(1, run.Code);
        Assert.Contains("AWS_ACCESS_KEY_ID", run.Error);
        Assert.Single(run.Error.Trim().Split('\n'));
    }
}
