using System.Text.Json;

namespace ProxyBackup.Cli.Tests;

/// <summary>`proxybackup drill` and a policy's drill schedule on the command line.</summary>
public class DrillCliTests
{
    [Fact]
    public async Task A_drill_from_the_cli_says_its_recovery_time_and_a_bad_drill_schedule_is_refused()
    {
        await using var w = await EngineWorld.StartAsync();
        var world = await WorldArgsAsync(w);
        var (code, _, error) = await ProxybackupAsync(["vm", "backup", "web-01", .. world]);
        Assert.True(code == 0, error);
        var before = w.Inventory();

        (code, var output, error) = await ProxybackupAsync(["drill", "web-01", "--check", "test -n \"$PROXYBACKUP_VM_NAME\"", .. world]);
        Assert.True(code == 0, error + output);
        Assert.Matches(@"Drill of VM \d+ from restore point \S+ succeeded: recovery time \d+\.\d s \(restored, read back and matched, running, checked\)\.", output);
        Assert.Contains("The sandbox is removed.", output, StringComparison.Ordinal);
        Assert.Equal(before["vms"], w.Inventory()["vms"]);

        (code, output, _) = await ProxybackupAsync("jobs", "--json", "--catalog", w.Catalog.Path);
        Assert.Equal(0, code);
        var drill = JsonDocument.Parse(output).RootElement.EnumerateArray().First(j => j.GetProperty("kind").GetString() == "drill");
        Assert.Equal("succeeded", drill.GetProperty("state").GetString());
        Assert.True(drill.TryGetProperty("measured", out var measured) && measured.ValueKind != JsonValueKind.Null);

        (code, _, error) = await ProxybackupAsync("policy", "add", "gold", "--schedule", "@daily", "--vm", "web-01", "--drill-schedule", "0 25 * * *", "--catalog", w.Catalog.Path);
        Assert.Equal(1, code);
        Assert.Contains("drill schedule: ", error, StringComparison.Ordinal);
        (code, _, error) = await ProxybackupAsync("policy", "add", "gold", "--schedule", "@daily", "--vm", "web-01", "--drill-schedule", "0 4 * * sun", "--drill-check", "true", "--catalog", w.Catalog.Path);
        Assert.True(code == 0, error);
    }
}
