using ProxyBackup.TestSupport;
using static ProxyBackup.Cli.Tests.ApplianceBinaries;

namespace ProxyBackup.Cli.Tests;

/// <summary>repository name-cloud: the points made before a cloud had a name become its own (docs/operations.md, "Clouds sharing a repository").</summary>
public sealed class CloudNameCliTests
{
    [Fact]
    public async Task Name_cloud_renames_the_unnamed_vm_sources_only_and_refuses_a_bad_name()
    {
        using var dir = new TempDirectory();
        var repo = dir.Combine("repo");
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 1L << 20);
        Assert.Equal(0, (await ProxybackupAsync("repository", "init", "--repo", repo)).Code);
        foreach (var source in new[] { "vm-3", "files-x", "other.vm-5" })
            Assert.Equal(0, (await ProxybackupAsync("repository", "backup", "--repo", repo, "--source", source, "--disk", $"0={disk}")).Code);

        var dry = await ProxybackupAsync("repository", "name-cloud", "cloud-a", "--dry-run", "--repo", repo);
        Assert.Equal(0, dry.Code);
        Assert.Contains("vm-3 -> cloud-a.vm-3", dry.Output);
        Assert.Contains("1 source(s) would be renamed", dry.Output);
        var run = await ProxybackupAsync("repository", "name-cloud", "cloud-a", "--repo", repo);
        Assert.True(run.Code == 0, run.Error);
        Assert.Contains("Renamed 1 source(s), 1 restore point(s)", run.Output);
        var list = await ProxybackupAsync("repository", "list", "--repo", repo);
        var sources = list.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => line.Split(' ')[0]).Order(StringComparer.Ordinal);
        Assert.Equal(["cloud-a.vm-3", "files-x", "other.vm-5"], sources);
        var restored = dir.Combine("restored.img");
        Assert.Equal(0, (await ProxybackupAsync("repository", "restore", "--repo", repo, "--source", "cloud-a.vm-3", "--point", "latest", "--disk", "0", "--to", restored)).Code);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(restored));

        var bad = await ProxybackupAsync("repository", "name-cloud", "Cloud A", "--repo", repo);
        Assert.Equal(1, bad.Code);
        Assert.Contains("not a cloud name", bad.Error);
    }
}
