using System.Text.Json;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

public class DemoAndIdentityTests
{
    [Fact]
    public async Task The_demo_restores_bit_exact_and_leaves_nothing_on_the_cloud()
    {
        using var p = ChildProcess.Start("dotnet", Path.Combine(AppContext.BaseDirectory, "proxybackup.dll"), "demo", "--json", "--disk-mb", "64");
        var output = await p.Process.StandardOutput.ReadToEndAsync();
        await p.Process.WaitForExitAsync();
        Assert.True(p.Process.ExitCode == 0, output + await p.Process.StandardError.ReadToEndAsync());
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(0, root.GetProperty("leftoverObjects").GetInt32());
        var disks = root.GetProperty("disks").EnumerateArray().ToList();
        Assert.Equal(2, disks.Count);
        foreach (var d in disks)
            Assert.Equal(d.GetProperty("SourceSha256").GetString(), d.GetProperty("RestoredSha256").GetString());
        // The incremental read every byte but only the chunks the guest wrote to count as changed.
        Assert.True(disks.Sum(d => d.GetProperty("IncrementalBytesChanged").GetInt64()) < disks.Sum(d => d.GetProperty("IncrementalBytesRead").GetInt64()));
    }

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
        var indexed = w.Catalog.IndexedPoints(BackupJob.SourceOf(web.Id));
        Assert.Equal(2, indexed.Count);
        Assert.Equal(["full", "incremental"], indexed.Select(p => p.Kind));
        Assert.All(indexed, p => Assert.Equal("web-01", p.VmName));

        var lost = new ProxyBackup.Catalog.SqliteCatalog(Path.Combine(w.Root, "new-catalog.db"));
        Assert.Empty(lost.IndexedPoints());
        Assert.Equal(2, lost.Rebuild(w.Repository));
        Assert.Equal(indexed.Select(p => p.Id), lost.IndexedPoints().Select(p => p.Id));
    }
}

public class FirstBootTests
{
    private static string Cli => Path.Combine(AppContext.BaseDirectory, "proxybackup.dll");

    [Fact]
    public async Task The_context_seeds_the_configuration_once_and_the_password_only_the_secrets_file()
    {
        using var dir = new TempDirectory();
        var context = dir.Combine("one_env");
        await File.WriteAllTextAsync(context, "export VMID=\"17\"\nexport PROXYBACKUP_ENDPOINT=\"http://10.0.0.1:2633/RPC2\"\nexport PROXYBACKUP_USER=\"backup\"\nexport PROXYBACKUP_PASSWORD=\"p\\\"a\\$s\"\nexport PROXYBACKUP_REPOSITORY=\"/srv/backup\"\n");
        var config = dir.Combine("etc", "config.json");
        using (var p = ChildProcess.Start("dotnet", Cli, "configure", "--from-context", "--context-file", context, "--config", config))
        {
            var output = await p.Process.StandardOutput.ReadToEndAsync();
            await p.Process.WaitForExitAsync();
            Assert.Equal(0, p.Process.ExitCode);
            Assert.DoesNotContain("p\"a$s", output, StringComparison.Ordinal);
        }
        var saved = JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement;
        Assert.Equal("http://10.0.0.1:2633/RPC2", saved.GetProperty("OpenNebula").GetProperty("Endpoint").GetString());
        Assert.Equal("backup", saved.GetProperty("OpenNebula").GetProperty("User").GetString());
        Assert.Equal(17, saved.GetProperty("OpenNebula").GetProperty("ProxyVmId").GetInt32());
        Assert.Equal("/srv/backup", saved.GetProperty("Repository").GetProperty("Path").GetString());
        Assert.DoesNotContain("PASSWORD", await File.ReadAllTextAsync(config), StringComparison.OrdinalIgnoreCase);
        var secrets = dir.Combine("etc", "secrets.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secrets));
        Assert.Equal("p\"a$s", JsonDocument.Parse(await File.ReadAllTextAsync(secrets)).RootElement.GetProperty("OpenNebulaPassword").GetString());

        // A second boot keeps what the operator may have changed since.
        await File.WriteAllTextAsync(context, "export VMID=\"99\"\n");
        using var again = ChildProcess.Start("dotnet", Cli, "configure", "--from-context", "--context-file", context, "--config", config);
        Assert.Contains("nothing changed", await again.Process.StandardOutput.ReadToEndAsync(), StringComparison.Ordinal);
        Assert.Equal(17, JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement.GetProperty("OpenNebula").GetProperty("ProxyVmId").GetInt32());
    }
}
