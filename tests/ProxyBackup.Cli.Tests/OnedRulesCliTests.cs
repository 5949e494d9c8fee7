using ProxyBackup.OpenNebula;

namespace ProxyBackup.Cli.Tests;

/// <summary>What an operator met at the command line against a real oned 6.10.5 (issue 17), replayed against the simulator.</summary>
public class OnedRulesCliTests
{
    [Fact]
    public async Task A_deleted_vm_is_listed_by_its_restore_points_and_restored_by_name()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        await w.Client.VmActionAsync("terminate-hard", web.Id);
        await w.Steps.Waiter.VmUntilAsync(web.Id, "DONE", v => v.State == VmState.Done, TimeSpan.FromSeconds(30));
        var args = await WorldArgsAsync(w);

        var (code, output, error) = await ProxybackupAsync(["vm", "list", .. args]);
        Assert.True(code == 0, error);
        Assert.Matches($@"(?m)^\s*{web.Id}\s+web-01\s+\(deleted\)\s+\S+ \S+Z {point.Id}$", output);

        (code, output, error) = await ProxybackupAsync(["vm", "points", "web-01", .. args]);
        Assert.True(code == 0, error);
        Assert.StartsWith(point.Id, output, StringComparison.Ordinal);

        (code, output, error) = await ProxybackupAsync(["vm", "restore", "web-01", "--name", "web-01-back", .. args]);
        Assert.True(code == 0, error);
        Assert.Contains($"Restored {point.Id} as VM ", output, StringComparison.Ordinal);
        Assert.Equal(VmState.Active, (await w.VmAsync("web-01-back")).State);

        (code, _, error) = await ProxybackupAsync(["vm", "points", "no-such-vm", .. args]);
        Assert.Equal(1, code);
        Assert.Equal("proxybackup: No VM is named 'no-such-vm', in OpenNebula or in the repository's restore points; 'proxybackup vm list' shows both.", error.Trim());
    }

    [Fact]
    public async Task Deleting_a_snapshot_that_does_not_exist_is_an_error_not_a_success()
    {
        await using var w = await EngineWorld.StartAsync();
        var args = await WorldArgsAsync(w);
        var (code, output, error) = await ProxybackupAsync(["snapshot", "delete", "web-01", "--disk", "0", "--snapshot", "7", .. args]);
        Assert.Equal(1, code);
        Assert.DoesNotContain("deleted", output, StringComparison.Ordinal);
        Assert.Contains("has no snapshot 7; 'proxybackup snapshot list", error, StringComparison.Ordinal);
    }
}
