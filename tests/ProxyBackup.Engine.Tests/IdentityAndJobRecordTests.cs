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
        var indexed = w.Catalog.ListedPoints(w.Backup.Sources.Of(web.Id));
        Assert.Equal(2, indexed.Count);
        Assert.Equal(["full", "incremental"], indexed.Select(p => p.Kind));
        Assert.All(indexed, p => Assert.Equal("web-01", p.VmName));

        var lost = new ProxyBackup.Catalog.SqlCatalog(Path.Combine(w.Root, "new-catalog.db"));
        Assert.Empty(lost.ListedPoints());
        Assert.Equal(2, lost.Rebuild(w.Repository, w.Backup.Sources));
        Assert.Equal(indexed.Select(p => p.Id), lost.ListedPoints().Select(p => p.Id));
    }

    [Fact]
    public void Each_vms_latest_job_of_a_kind_is_found_however_many_jobs_came_after()
    {
        using var dir = new TempDirectory();
        var clock = new ManualClock(new DateTimeOffset(2026, 12, 1, 2, 0, 0, TimeSpan.Zero));
        var catalog = new ProxyBackup.Catalog.SqlCatalog(dir.Combine("catalog.db"), clock);
        void Job(string id, string kind, int vm, bool ok, string? error = null)
        {
            clock.Now += TimeSpan.FromMinutes(1);
            catalog.Started(id, kind, vm);
            catalog.Finished(id, ok, 0, 0, null, error);
        }
        Job("b1", "backup", 7, ok: false, "snapshot refused");
        Job("b2", "backup", 7, ok: true);
        Job("b3", "backup", 8, ok: false, "disk full");
        Job("r1", "restore", 8, ok: true);
        for (var i = 0; i < 30; i++) Job($"x{i}", "backup", 100 + i, ok: true);

        var last = catalog.LastJobs("backup");

        Assert.Equal(32, last.Count);
        Assert.Equal(("b2", "succeeded"), (last[7].Id, last[7].State));
        Assert.Equal(("b3", "failed", "disk full"), (last[8].Id, last[8].State, last[8].Error));
        Assert.Equal("r1", Assert.Single(catalog.LastJobs("restore")).Value.Id);
        Assert.DoesNotContain(catalog.Recent(20), j => j.VmId is 7 or 8);
    }
}
