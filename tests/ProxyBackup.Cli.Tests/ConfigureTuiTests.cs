using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using ProxyBackup.XmlRpc.Server;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>The configuration TUI driven through tmux: a configuration made in the menus is saved and works.</summary>
public class ConfigureTuiTests
{
    [Fact]
    public async Task An_operator_configures_the_appliance_in_the_menus_and_it_works()
    {
        await using var w = await EngineWorld.StartAsync();
        var etc = Path.Combine(w.Root, "etc");
        Directory.CreateDirectory(etc);
        var config = Path.Combine(etc, "config.json");
        // What only a developer sets: where the catalog is, and the simulator's devices directory.
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new { Catalog = new { Path = Path.Combine(w.Root, "tui-catalog.db") }, Devices = new { Directory = w.Sim.Cloud.Devices.Directory } }));
        var repo = Path.Combine(w.Root, "tui-repo");

        using (var tui = new TmuxSession($"dotnet {ProxybackupDll} configure --config {config}"))
        {
            await tui.ChooseAsync("What do you want to set up?", "Connection");
            await tui.AnswerAsync("OpenNebula XML-RPC endpoint:", w.Sim.Endpoint.ToString());
            await tui.AnswerAsync("User:", "");
            await tui.AnswerAsync("Password or login token:", "wrong-password");
            await tui.AnswerAsync("Test the connection now?", "y");
            await tui.WaitForAsync("User couldn't be authenticated");  // a wrong password is said so, and nothing breaks
            tui.Send("Enter");
            await tui.ChooseAsync("What do you want to set up?", "Connection");
            await tui.AnswerAsync("OpenNebula XML-RPC endpoint:", "");
            await tui.AnswerAsync("User:", "");
            await tui.AnswerAsync("Password or login token", "pw");
            await tui.AnswerAsync("Test the connection now?", "y");
            await tui.WaitForAsync("Connected: OpenNebula 6.10.5, user oneadmin");
            Assert.DoesNotContain("pw", tui.Screen().Split('\n').Single(l => l.Contains("Password", StringComparison.Ordinal)).Split(':')[^1], StringComparison.Ordinal);
            tui.Send("Enter");

            await tui.ChooseAsync("What do you want to set up?", "Proxy VM");
            await tui.AnswerAsync("Proxy VM ID:", w.ProxyId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            await tui.WaitForAsync("(proxybackup) is RUNNING");
            tui.Send("Enter");

            await tui.ChooseAsync("What do you want to set up?", "Repository");
            await tui.AnswerAsync("Repository directory", "relative/path");
            await tui.WaitForAsync("An absolute path");                 // refused where it is typed
            tui.Send("C-u");
            await tui.AnswerAsync("An absolute path", repo);
            await tui.AnswerAsync("Create one?", "y");
            await tui.AnswerAsync("Encrypt it", "n");
            await tui.WaitForAsync("Created repository");
            tui.Send("Enter");

            await tui.ChooseAsync("What do you want to set up?", "Policies");
            await tui.ChooseAsync("Policies", "Create or edit a policy");
            await tui.AnswerAsync("Policy name:", "gold");
            await tui.AnswerAsync("Time zone:", "");
            await tui.AnswerAsync("Schedule", "0 25 * * *");
            await tui.WaitForAsync("Hours: Value must be a number between 0 and 23");
            tui.Send("C-u");
            await tui.AnswerAsync("Hours: Value must be a number between 0 and 23", "0 3 * * *");
            await tui.ChooseAsync("Select VMs by", "Template attribute");
            await tui.AnswerAsync("Attribute=value:", "");
            foreach (var prompt in new[] { "Keep last:", "Keep daily:", "Keep weekly:", "Keep monthly:", "Full backup every N runs" }) await tui.AnswerAsync(prompt, "");
            await tui.WaitForAsync("Today this policy selects 2 VM(s)");
            await tui.AnswerAsync("Save this policy?", "y");
            await tui.WaitForAsync("Policy saved.");
            tui.Send("Enter");

            // A snapshot taken and reverted to from the menus; the running VM is powered off for it and resumed.
            var web = (await w.VmAsync("web-01")).Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
            await tui.ChooseAsync("What do you want to set up?", "Snapshots");
            await tui.AnswerAsync("VM ID:", web);
            await tui.ChooseAsync("Create a snapshot", "Create a snapshot");
            await tui.AnswerAsync("Disk ID:", "");
            await tui.AnswerAsync("Name:", "before-upgrade");
            await tui.WaitForAsync("taken.");
            tui.Send("Enter");
            await tui.ChooseAsync("What do you want to set up?", "Snapshots");
            await tui.AnswerAsync("VM ID:", web);
            await tui.ChooseAsync("Revert a disk to a snapshot", "Revert a disk to a snapshot");
            await tui.ChooseAsync("Revert which disk to which snapshot?", "disk 0: snapshot");
            await tui.AnswerAsync("Revert?", "y");
            await tui.AnswerAsync("power it off for the revert", "y");
            await tui.AnswerAsync("Power it off hard", "n");
            await tui.WaitForAsync("reverted to snapshot");
            tui.Send("Enter");

            await tui.ChooseAsync("What do you want to set up?", "Save and exit");
            await tui.WaitForAsync("Saved");
        }

        var reverted = await w.VmAsync("web-01");
        Assert.Equal("RUNNING", reverted.StateName);
        Assert.True(Assert.Single(reverted.SnapshotsOf(0)).Active);

        var saved = JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement;
        Assert.Equal(w.Sim.Endpoint.ToString(), saved.GetProperty("OpenNebula").GetProperty("Endpoint").GetString());
        Assert.Equal(w.ProxyId, saved.GetProperty("OpenNebula").GetProperty("ProxyVmId").GetInt32());
        Assert.DoesNotContain("\"pw\"", await File.ReadAllTextAsync(config), StringComparison.Ordinal);
        var secrets = Path.Combine(etc, "secrets.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secrets));
        Assert.True(File.Exists(Path.Combine(repo, "config")));
        Assert.Equal("gold", Assert.Single(new ProxyBackup.Catalog.SqliteCatalog(Path.Combine(w.Root, "tui-catalog.db")).Policies()).Name);

        // The configuration works: a backup with nothing but --config.
        using var backup = ChildProcess.Start("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
        var output = await backup.Process.StandardOutput.ReadToEndAsync();
        var error = await backup.Process.StandardError.ReadToEndAsync();
        await backup.Process.WaitForExitAsync();
        Assert.True(backup.Process.ExitCode == 0, error);
        Assert.Contains("restore point", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_operator_pins_the_certificate_an_https_front_end_presents_and_the_pin_is_saved()
    {
        using var dir = new TempDirectory();
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=front-end.cloud.example", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        using var selfSigned = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        using var certificate = X509CertificateLoader.LoadPkcs12(selfSigned.Export(X509ContentType.Pkcs12), null);
        await using var frontEnd = new XmlRpcHttpServer(IPAddress.Loopback, 0, (_, _) => Task.FromResult<object?>("6.10.5"), certificate: certificate);
        frontEnd.Start();
        var fingerprint = string.Join(':', SHA256.HashData(certificate.RawData).Select(b => b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
        var config = dir.Combine("config.json");

        using (var tui = new TmuxSession($"dotnet {ProxybackupDll} configure --config {config}"))
        {
            await tui.ChooseAsync("What do you want to set up?", "Connection");
            await tui.AnswerAsync("OpenNebula XML-RPC endpoint:", $"https://127.0.0.1:{frontEnd.Endpoint.Port}/RPC2");
            await tui.AnswerAsync("User:", "");
            await tui.AnswerAsync("Password or login token:", "pw");
            await tui.ChooseAsync("Who vouches for the front-end's TLS certificate?", "Pin the certificate");
            await tui.WaitForAsync("CN=front-end.cloud.example");
            await tui.WaitForAsync(fingerprint);
            await tui.AnswerAsync("Pin this certificate?", "y");
            await tui.AnswerAsync("Test the connection now?", "n");
            await tui.ChooseAsync("What do you want to set up?", "Save and exit");
            await tui.WaitForAsync("Saved");
        }

        var saved = JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement.GetProperty("OpenNebula");
        Assert.Equal(fingerprint, saved.GetProperty("PinnedCertificateSha256").GetString());
        Assert.Equal(JsonValueKind.Null, saved.GetProperty("CaCertificateFile").ValueKind);
    }
}
