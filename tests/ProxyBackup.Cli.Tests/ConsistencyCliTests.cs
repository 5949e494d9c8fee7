using System.Text.Json;

namespace ProxyBackup.Cli.Tests;

/// <summary>The snapshot set's options on the command line: a policy keeps them, a backup says how long the VM paused.</summary>
public class ConsistencyCliTests
{
    [Fact]
    public async Task A_policy_keeps_its_consistency_and_commands_and_a_suspend_backup_reports_its_pause()
    {
        await using var w = await EngineWorld.StartAsync();
        var world = await WorldArgsAsync(w);
        var (code, output, error) = await ProxybackupAsync(["policy", "add", "db", "--schedule", "@daily", "--vm", "db-01", "--consistency", "suspend",
            "--pre-command", "ssh backup@$PROXYBACKUP_VM_IP fsfreeze -f /var/lib/db", "--post-command", "ssh backup@$PROXYBACKUP_VM_IP fsfreeze -u /var/lib/db", "--catalog", w.Catalog.Path]);
        Assert.True(code == 0, error);
        var (_, listed, _) = await ProxybackupAsync("policy", "list", "--json", "--catalog", w.Catalog.Path);
        var consistency = JsonDocument.Parse(listed).RootElement[0].GetProperty("consistency");
        Assert.Equal("suspend", consistency.GetProperty("mode").GetString());
        Assert.Equal("ssh backup@$PROXYBACKUP_VM_IP fsfreeze -f /var/lib/db", consistency.GetProperty("pre_command").GetString());

        (code, _, error) = await ProxybackupAsync(["policy", "add", "bad", "--schedule", "@daily", "--vm", "db-01", "--command-timeout", "0", "--catalog", w.Catalog.Path]);
        Assert.Equal(1, code);
        Assert.Contains("hook timeout: 1 to 3600 seconds", error, StringComparison.Ordinal);

        (code, output, error) = await ProxybackupAsync(["vm", "backup", "db-01", "--consistency", "suspend", .. world]);
        Assert.True(code == 0, error);
        Assert.Matches(@"the VM was paused \d+\.\d s for a consistent snapshot set \(suspend\)", output);
        Assert.Equal("RUNNING", (await w.VmAsync("db-01")).StateName);
    }
}
