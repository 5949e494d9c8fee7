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
        Assert.DoesNotContain("web-01", output, StringComparison.Ordinal);
        Assert.Contains("1 VM(s) deleted from OpenNebula still have restore points; --all lists them.", error, StringComparison.Ordinal);
        (code, output, error) = await ProxybackupAsync(["vm", "list", "--all", .. args]);
        Assert.True(code == 0, error);
        Assert.Matches($@"(?m)^\s*{web.Id}\s+web-01\s+\(deleted\)\s+-\s+\S+ \S+Z {point.Id}\s+succeeded$", output);

        (code, output, error) = await ProxybackupAsync(["vm", "points", "web-01", .. args]);
        Assert.True(code == 0, error);
        Assert.StartsWith(point.Id, output, StringComparison.Ordinal);

        (code, output, error) = await ProxybackupAsync(["vm", "restore", "web-01", "--name", "web-01-back", .. args]);
        Assert.True(code == 0, error);
        Assert.Contains($"Restored {point.Id} as VM ", output, StringComparison.Ordinal);
        Assert.Equal(VmState.Active, (await w.VmAsync("web-01-back")).State);

        // Every --json output: one casing (snake_case) and times as ISO 8601, never epoch numbers.
        (code, _, error) = await ProxybackupAsync(["snapshot", "create", "web-01-back", "--disk", "0", "--name", "before-upgrade", .. args]);
        Assert.True(code == 0, error);
        string[] repository = ["--repo", w.Repository.Root], catalog = ["--catalog", w.Catalog.Path];
        string[][] commands = [["vm", "list", .. args], ["vm", "points", "web-01", .. args], ["snapshot", "list", "web-01-back", .. args], ["jobs", .. catalog],
                     ["repository", "list", .. repository], ["repository", "stats", .. repository], ["catalog", "points", .. catalog]];
        foreach (var command in commands)
        {
            (code, output, error) = await ProxybackupAsync([.. command, "--json"]);
            Assert.True(code == 0, $"{string.Join(' ', command)}: {error}");
            AssertJsonConventions(string.Join(' ', command), System.Text.Json.JsonDocument.Parse(output).RootElement);
        }

        (code, _, error) = await ProxybackupAsync(["vm", "points", "no-such-vm", .. args]);
        Assert.Equal(1, code);
        Assert.Equal("proxybackup: No VM is named 'no-such-vm', in OpenNebula or in the repository's restore points; 'proxybackup vm list' shows both.", error.Trim());
    }

    private static readonly System.Text.RegularExpressions.Regex SnakeCase = new("^[a-z][a-z0-9]*(_[a-z0-9]+)*$");
    private static readonly System.Text.RegularExpressions.Regex TimeName = new("(^|_)(time|date|started|ended|created|refreshed)$");

    private static void AssertJsonConventions(string command, System.Text.Json.JsonElement element, string path = "$")
    {
        switch (element.ValueKind)
        {
            case System.Text.Json.JsonValueKind.Array:
                foreach (var item in element.EnumerateArray()) AssertJsonConventions(command, item, path + "[]");
                break;
            case System.Text.Json.JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                {
                    Assert.True(SnakeCase.IsMatch(property.Name), $"{command}: {path}.{property.Name} is not snake_case");
                    if (TimeName.IsMatch(property.Name) && property.Value.ValueKind != System.Text.Json.JsonValueKind.Null)
                        Assert.True(property.Value.ValueKind == System.Text.Json.JsonValueKind.String && DateTimeOffset.TryParse(property.Value.GetString(), System.Globalization.CultureInfo.InvariantCulture, out _),
                            $"{command}: {path}.{property.Name} is not an ISO 8601 time: {property.Value}");
                    // Tags and the like are the operator's own keys, not names of ours.
                    if (property.Name != "tags") AssertJsonConventions(command, property.Value, path + "." + property.Name);
                }
                break;
        }
    }

    [Fact]
    public async Task Vm_list_shows_what_protects_each_vm_and_its_last_backup_and_lists_vms_without_a_repository()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var point = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        ProxyBackup.Scheduler.ProtectionPolicyRules.Save(w.Catalog, new ProxyBackup.Contracts.ProtectionPolicy
        {
            Name = "web", Schedule = "@daily", Selection = new ProxyBackup.Contracts.VmSelection { VmNames = ["web-01"] },
        });
        var args = await WorldArgsAsync(w);

        var (code, output, error) = await ProxybackupAsync(["vm", "list", "--json", .. args]);
        Assert.True(code == 0, error);
        var rows = System.Text.Json.JsonDocument.Parse(output).RootElement.EnumerateArray().ToList();
        var row = rows.Single(r => r.GetProperty("id").GetInt32() == web.Id);
        Assert.Equal(["web"], row.GetProperty("protected_by").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal("succeeded", row.GetProperty("last_backup").GetString());
        Assert.Equal(point.Id, row.GetProperty("last_restore_point").GetString());
        var other = rows.First(r => r.GetProperty("id").GetInt32() != web.Id && r.GetProperty("id").GetInt32() != w.ProxyId);
        Assert.Empty(other.GetProperty("protected_by").EnumerateArray());
        Assert.Equal(System.Text.Json.JsonValueKind.Null, other.GetProperty("last_backup").ValueKind);

        // No repository named or configured: the VMs are listed all the same, and one line says what is missing.
        var repoAt = Array.IndexOf(args, "--repo");
        string[] withoutRepository = [.. args[..repoAt], .. args[(repoAt + 2)..], "--config", Path.Combine(w.Root, "no-such-config.json")];
        (code, output, error) = await ProxybackupAsync(["vm", "list", .. withoutRepository]);
        Assert.True(code == 0, error);
        Assert.Equal("proxybackup: no repository named or configured: restore points are not shown (--repo PATH).", error.Trim());
        Assert.Matches($@"(?m)^\s*{web.Id}\s+web-01\s+\S+\s+web\s+\?\s+succeeded$", output);
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

    [Fact]
    public async Task Cleanup_removes_snapshot_leftovers_while_the_proxy_is_powered_off()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        const string Job = "b20261101000000abcd";
        var entry = w.Catalog.Record(Job, ProxyBackup.Contracts.CloudObjectKind.DiskSnapshot, web.Id, 0, $"pb-{Job}-d0");
        w.Catalog.SetObjectId(entry, await w.Client.VmDiskSnapshotCreateAsync(web.Id, 0, $"pb-{Job}-d0"));
        await w.Steps.Waiter.VmSettledAsync(web.Id, TimeSpan.FromSeconds(30));
        // The job that took it has died: its process started at another time.
        using (var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={w.Catalog.Path}"))
        {
            db.Open();
            using var died = db.CreateCommand();
            died.CommandText = "UPDATE journal SET owner_start = 1";
            Assert.Equal(1, died.ExecuteNonQuery());
        }
        await w.Client.VmActionAsync("poweroff-hard", w.ProxyId);
        await w.Steps.Waiter.VmUntilAsync(w.ProxyId, "POWEROFF", v => v.State == VmState.Poweroff, TimeSpan.FromSeconds(30));

        var (code, output, error) = await ProxybackupAsync(["cleanup", .. await WorldArgsAsync(w)]);
        Assert.True(code == 0, output + error);
        Assert.Contains("Removed 1 leftover object(s).", output, StringComparison.Ordinal);
        Assert.Empty((await w.Client.VmInfoAsync(web.Id)).SnapshotsOf(0));
        Assert.Empty(w.Catalog.Pending());
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(32768, 4096)]
    public async Task A_catalog_with_leftover_wal_and_shm_files_opens(int shmBytes, int walBytes)
    {
        using var dir = new ProxyBackup.TestSupport.TempDirectory();
        var catalog = dir.Combine("catalog.db");
        new ProxyBackup.Catalog.SqlCatalog(catalog).Started("b1", "backup", 7);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        // What a killed process can leave beside the catalog: empty or torn write-ahead files.
        await File.WriteAllBytesAsync(catalog + "-shm", System.Security.Cryptography.RandomNumberGenerator.GetBytes(shmBytes));
        await File.WriteAllBytesAsync(catalog + "-wal", System.Security.Cryptography.RandomNumberGenerator.GetBytes(walBytes));
        var (code, output, error) = await ProxybackupAsync("jobs", "--catalog", catalog);
        Assert.True(code == 0, error);
        Assert.Contains("b1", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task At_daily_is_a_schedule_a_policy_takes_vm_names_and_a_usage_error_exits_2_with_the_help_to_read()
    {
        using var dir = new ProxyBackup.TestSupport.TempDirectory();
        var (code, output, error) = await ProxybackupAsync("policy", "add", "nightly", "--schedule", "@daily", "--vm", "1", "--vm", "db-01", "--catalog", dir.Combine("catalog.db"));
        Assert.True(code == 0, error);
        Assert.Contains("Policy 'nightly' saved", output, StringComparison.Ordinal);
        // A VM by name, as vm backup takes it.
        (code, output, error) = await ProxybackupAsync("policy", "list", "--json", "--catalog", dir.Combine("catalog.db"));
        Assert.True(code == 0, error);
        var selection = System.Text.Json.JsonDocument.Parse(output).RootElement[0].GetProperty("selection");
        Assert.Equal([1], selection.GetProperty("vm_ids").EnumerateArray().Select(e => e.GetInt32()));
        Assert.Equal(["db-01"], selection.GetProperty("vm_names").EnumerateArray().Select(e => e.GetString()));

        (code, _, error) = await ProxybackupAsync("vm", "restore", "web-01", "--deploy-timeout", "0");
        Assert.Equal(2, code);
        Assert.Equal(["proxybackup: --deploy-timeout is in minutes, from 1 to 1440.", "proxybackup: see 'proxybackup vm restore --help'."], error.Trim().Split('\n'));
    }
}
