using Microsoft.Extensions.Logging.Abstractions;
using ProxyBackup.Repository;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>Restore points carry their cloud (docs/operations.md, "Clouds sharing a repository"): two clouds' VM of one ID are two series in one repository.</summary>
public sealed class CloudSourcesTests
{
    [Fact]
    public async Task The_same_VM_ID_in_two_clouds_sharing_a_repository_makes_two_series_each_incremental_on_its_own()
    {
        await using var a = await EngineWorld.StartAsync(configure: o => o with { Sources = new VmSources("cloud-a") });
        await using var b = await EngineWorld.StartAsync(configure: o => o with { Sources = new VmSources("cloud-b") });
        var shared = a.Repository;
        var backupB = new BackupJob(b.Steps, b.Cleaner, b.Catalog, b.Catalog, shared, NullLogger.Instance, b.Catalog);
        var web = await a.VmAsync("web-01");
        Assert.Contains(await b.Client.VmPoolAsync(), v => v.Id == web.Id);

        var firstA = (await a.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var firstB = (await backupB.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        var secondA = (await a.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;

        Assert.Equal($"cloud-a.vm-{web.Id}", firstA.Source);
        Assert.Equal($"cloud-b.vm-{web.Id}", firstB.Source);
        // B's first backup did not take A's point for its parent, and A's second is incremental on A's first.
        Assert.Equal(("full", "full"), (firstA.Tags["kind"], firstB.Tags["kind"]));
        Assert.Equal(firstA.Id, secondA.Parent);
        Assert.Equal(("cloud-a", "cloud-b"), (secondA.Tags["cloud"], firstB.Tags["cloud"]));
        Assert.Equal(b.Sim.Endpoint.GetLeftPart(UriPartial.Path), firstB.Tags["cloud_endpoint"]);
        Assert.Equal([firstA.Id, secondA.Id], shared.ListRestorePoints(a.Backup.Sources.Of(web.Id)).Select(p => p.Id));
        Assert.Equal([firstB.Id], shared.ListRestorePoints(backupB.Sources.Of(web.Id)).Select(p => p.Id));
        Assert.False(a.Backup.Sources.TryVmId(firstB.Source, out _));
        // B's catalog rebuilt from the shared repository lists B's point only.
        Assert.Equal(1, b.Catalog.Rebuild(shared, backupB.Sources));
        Assert.Equal([firstB.Id], b.Catalog.ListedPoints().Select(p => p.Id));
    }

    [Fact]
    public async Task Renaming_a_source_moves_its_encrypted_points_without_touching_a_chunk_and_a_second_run_finds_nothing_left()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10, Key = RepositoryKey.FromPassphrase("rename") });
        var disk = dir.Combine("disk.img");
        await File.WriteAllBytesAsync(disk, [.. Enumerable.Range(0, 300_000).Select(i => (byte)(i * 7 % 251))]);
        RestorePoint first, second;
        using (var w = repo.StartRestorePoint("vm-4"))
        {
            w.AddMetadata("vm.xml", "<VM/>"u8);
            await w.AddDiskAsync("0", disk);
            first = w.Commit();
        }
        using (var w = repo.StartRestorePoint("vm-4", first))
        {
            await w.AddDiskAsync("0", disk);
            second = w.Commit();
        }
        var chunks = Directory.EnumerateFiles(Path.Combine(repo.Root, "chunks"), "*", SearchOption.AllDirectories).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToList();

        Assert.Equal(2, repo.RenameSource("vm-4", "cloud-a.vm-4"));
        Assert.Empty(repo.ListRestorePoints("vm-4"));
        var moved = BackupRepository.Open(repo.Root, RepositoryKey.FromPassphrase("rename")).ListRestorePoints("cloud-a.vm-4");
        Assert.Equal([first.Id, second.Id], moved.Select(p => p.Id));
        Assert.Equal(first.Id, moved[1].Parent);
        Assert.Equal("<VM/>", System.Text.Encoding.UTF8.GetString(repo.LoadMetadata(moved[0], "vm.xml")));
        var restored = dir.Combine("restored.img");
        await repo.RestoreDiskAsync(moved[1], "0", restored);
        Assert.Equal(await File.ReadAllBytesAsync(disk), await File.ReadAllBytesAsync(restored));
        Assert.Equal(chunks, Directory.EnumerateFiles(Path.Combine(repo.Root, "chunks"), "*", SearchOption.AllDirectories).Select(f => (f, File.GetLastWriteTimeUtc(f))).ToList());
        Assert.Equal(0, repo.RenameSource("vm-4", "cloud-a.vm-4"));
    }
}
