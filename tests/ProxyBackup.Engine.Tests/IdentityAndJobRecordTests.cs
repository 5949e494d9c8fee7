using System.Text.Json;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

public class IdentityAndJobRecordTests
{
    [Fact]
    public void The_proxy_vm_id_comes_from_the_context_files()
    {
        using var dir = new TempDirectory();
        var env = dir.Combine("one_env");
        File.WriteAllText(env, "export ONEGATE_ENDPOINT=\"http://x\"\nexport VMID=\"42\"\n");
        var sh = dir.Combine("context.sh");
        File.WriteAllText(sh, "DISK_ID='1'\nVMID='7'\n");
        Assert.Equal(42, ProxyIdentity.FromContext([dir.Combine("missing"), env, sh]));
        Assert.Equal(7, ProxyIdentity.FromContext([sh]));
        Assert.Null(ProxyIdentity.FromContext([dir.Combine("missing")]));
    }

    [Fact]
    public async Task Jobs_are_recorded_with_their_outcome()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var ok = await w.Backup.RunAsync(web.Id, new BackupOptions());
        await Assert.ThrowsAnyAsync<Exception>(() => w.Backup.RunAsync(424242, new BackupOptions()));
        var jobs = w.Catalog.Recent(10);
        Assert.Equal(2, jobs.Count);
        var good = jobs.Single(j => j.Id == ok.JobId);
        Assert.Equal("succeeded", good.State);
        Assert.Equal(ok.RestorePoint.Id, good.RestorePoint);
        Assert.True(good.BytesRead > 0);
        Assert.Contains(w.Catalog.LogOf(ok.JobId), l => l.Level == "info" && l.Message.Contains($"restore point {ok.RestorePoint.Id} committed", StringComparison.Ordinal));
        Assert.Contains(w.Catalog.LogOf(ok.JobId), l => l.Message.StartsWith("disk 0: read", StringComparison.Ordinal));
        var bad = jobs.Single(j => j.VmId == 424242);
        Assert.Equal("failed", bad.State);
        Assert.Contains(w.Catalog.LogOf(bad.Id), l => l.Level == "error" && l.Message.Contains("424242", StringComparison.Ordinal));
        Assert.Contains("424242", bad.Error, StringComparison.Ordinal);
        var e = await Assert.ThrowsAsync<JobFailedException>(() => ProxyIdentity.VerifyAsync(w.Client, 424242));
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
        Assert.Equal("proxybackup", (await ProxyIdentity.VerifyAsync(w.Client, w.ProxyId)).Name);
    }
}

public class CatalogIndexTests
{
    [Fact]
    public async Task The_index_follows_backups_and_is_rebuilt_from_the_repository_after_losing_the_catalog()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        await w.Backup.RunAsync(web.Id, new BackupOptions());
        await w.Backup.RunAsync(web.Id, new BackupOptions());
        var indexed = w.Catalog.ListedPoints(BackupJob.SourceOf(web.Id));
        Assert.Equal(2, indexed.Count);
        Assert.Equal(["full", "incremental"], indexed.Select(p => p.Kind));
        Assert.All(indexed, p => Assert.Equal("web-01", p.VmName));

        var lost = new ProxyBackup.Catalog.SqliteCatalog(Path.Combine(w.Root, "new-catalog.db"));
        Assert.Empty(lost.ListedPoints());
        Assert.Equal(2, lost.Rebuild(w.Repository));
        Assert.Equal(indexed.Select(p => p.Id), lost.ListedPoints().Select(p => p.Id));
    }
}
