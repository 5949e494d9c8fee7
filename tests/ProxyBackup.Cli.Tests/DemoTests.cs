using System.Text.Json;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>scripts/demo, the README's first command: the whole job against the simulator.</summary>
public class DemoTests
{
    [Fact]
    public async Task The_demo_restores_bit_exact_and_leaves_nothing_on_the_cloud()
    {
        using var p = ChildProcess.Start("dotnet", DemoDll, "--json", "--disk-mb", "64");
        var output = await p.Process.StandardOutput.ReadToEndAsync();
        await p.Process.WaitForExitAsync();
        Assert.True(p.Process.ExitCode == 0, output + await p.Process.StandardError.ReadToEndAsync());
        using var doc = JsonDocument.Parse(output);
        var root = doc.RootElement;
        Assert.True(root.GetProperty("ok").GetBoolean());
        Assert.Equal(0, root.GetProperty("leftover_objects").GetInt32());
        var disks = root.GetProperty("disks").EnumerateArray().ToList();
        Assert.Equal(2, disks.Count);
        foreach (var d in disks)
            Assert.Equal(d.GetProperty("source_sha256").GetString(), d.GetProperty("restored_sha256").GetString());
        // The incremental read every byte but only the chunks the guest wrote to count as changed.
        Assert.True(disks.Sum(d => d.GetProperty("incremental_bytes_changed").GetInt64()) < disks.Sum(d => d.GetProperty("incremental_bytes_read").GetInt64()));
    }
}
