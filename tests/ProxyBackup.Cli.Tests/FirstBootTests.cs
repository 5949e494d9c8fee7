using System.Text.Json;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

public class FirstBootTests
{
    [Fact]
    public async Task The_context_seeds_the_configuration_once_and_the_password_only_the_secrets_file()
    {
        using var dir = new TempDirectory();
        var context = dir.Combine("one_env");
        await File.WriteAllTextAsync(context, "export VMID=\"17\"\nexport PROXYBACKUP_ENDPOINT=\"http://10.0.0.1:2633/RPC2\"\nexport PROXYBACKUP_USER=\"backup\"\nexport PROXYBACKUP_PASSWORD=\"p\\\"a\\$s\"\nexport PROXYBACKUP_REPOSITORY=\"/srv/backup\"\n");
        var config = dir.Combine("etc", "config.json");
        using (var p = ChildProcess.Start("dotnet", ProxybackupDll, "configure", "--from-context", "--context-file", context, "--config", config))
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
        using var again = ChildProcess.Start("dotnet", ProxybackupDll, "configure", "--from-context", "--context-file", context, "--config", config);
        Assert.Contains("nothing changed", await again.Process.StandardOutput.ReadToEndAsync(), StringComparison.Ordinal);
        Assert.Equal(17, JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement.GetProperty("OpenNebula").GetProperty("ProxyVmId").GetInt32());
    }
}
