using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json;
using System.Text.Json.Nodes;
using ProxyBackup.XmlRpc.Server;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>
/// A new appliance set up in the console under tmux, as an operator does after the import: no
/// configuration yet; the connection and the proxy VM tested and saved; the repository and the catalog
/// placed, the repository created encrypted; then a backup with nothing but --config works.
/// </summary>
public class ConsoleSetupTests
{
    [Fact]
    public async Task An_operator_sets_up_a_new_appliance_in_the_console_and_it_works()
    {
        await using var w = await EngineWorld.StartAsync();
        var config = Path.Combine(w.Root, "etc", "config.json");
        var secrets = Path.Combine(w.Root, "etc", "secrets.json");
        var repo = Path.Combine(w.Root, "console-repo");
        var catalog = Path.Combine(w.Root, "console-catalog.db");
        const string Passphrase = "correct horse battery";

        using (var tui = new TmuxSession($"dotnet {ProxybackupDll} configure --config {config}", width: 180, height: 45))
        {
            await tui.WaitForAsync($"No configuration at {config} yet", TimeSpan.FromSeconds(60));
            tui.Send("c");
            await tui.WaitForAsync("Connection to OpenNebula");
            tui.Send("C-a");
            tui.Send("-l", w.Sim.Endpoint.ToString());
            tui.Send("Tab", "Tab");                       // the user stays oneadmin
            tui.Send("-l", "pw");
            tui.Send("Tab");
            tui.Send("-l", w.ProxyId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            tui.Send("M-t");                              // Alt+T: Test
            await tui.WaitForAsync($"Proxy VM {w.ProxyId} (proxybackup): RUNNING.", TimeSpan.FromSeconds(60));
            Assert.Contains("Connected: OpenNebula 6.10.5, user oneadmin", tui.Screen(), StringComparison.Ordinal);
            Assert.False(File.Exists(config));            // a test writes nothing
            tui.Send("M-s");                              // Alt+S: Save
            await tui.WaitForAsync("Connection saved to", TimeSpan.FromSeconds(60));

            tui.Send("v");
            await tui.WaitForAsync("No repository in /srv/proxybackup yet");
            tui.Send("C-a");
            tui.Send("-l", "relative/path");
            tui.Send("M-s");
            await tui.WaitForAsync("Not saved: the repository directory and the catalog file are absolute paths.");
            tui.Send("Escape");                           // nothing written: the dialog is opened afresh
            await tui.WaitForGoneAsync("Not saved:");
            tui.Send("v");
            await tui.WaitForAsync("No repository in /srv/proxybackup yet");
            tui.Send("C-a");
            tui.Send("-l", repo);
            tui.Send("Tab");                              // typing replaces the field's text
            tui.Send("-l", catalog);
            tui.Send("Tab");
            tui.Send("-l", Passphrase);
            tui.Send("Tab");
            tui.Send("-l", Passphrase);
            tui.Send("M-s");
            await tui.WaitForAsync("Not saved: a passphrase was typed but Encrypt is not ticked");
            Assert.False(Directory.Exists(repo));
            tui.Send("M-e");                              // Alt+E: Encrypt
            tui.Send("M-s");
            await tui.WaitForAsync($"Created the repository {repo} (encrypted).", TimeSpan.FromSeconds(60));
            Assert.DoesNotContain(Passphrase, tui.Screen(), StringComparison.Ordinal);
            tui.Send("Escape");
        }

        var saved = JsonNode.Parse(await File.ReadAllTextAsync(config))!;
        Assert.Equal(w.Sim.Endpoint.ToString(), (string?)saved["OpenNebula"]!["Endpoint"]);
        Assert.Equal(w.ProxyId, (int?)saved["OpenNebula"]!["ProxyVmId"]);
        Assert.Equal((repo, catalog), ((string?)saved["Repository"]!["Path"], (string?)saved["Catalog"]!["Path"]));
        Assert.DoesNotContain("\"pw\"", saved.ToJsonString(), StringComparison.Ordinal);
        Assert.DoesNotContain(Passphrase, saved.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secrets));
        Assert.Equal(Passphrase, JsonDocument.Parse(await File.ReadAllTextAsync(secrets)).RootElement.GetProperty("RepositoryPassphrase").GetString());
        Assert.Throws<WrongKeyException>(() => BackupRepository.Open(repo, null));

        // What only a developer sets: the simulator's devices directory. Then a backup with nothing but --config.
        saved["Devices"] = new JsonObject { ["Directory"] = w.Sim.Cloud.Devices.DirectoryOf(w.ProxyId) };
        await File.WriteAllTextAsync(config, saved.ToJsonString());
        var (code, output, error) = await ProxybackupAsync("vm", "backup", "web-01", "--config", config);
        Assert.True(code == 0, error);
        Assert.Contains("restore point", output, StringComparison.Ordinal);
        Assert.Single(BackupRepository.Open(repo, RepositoryKey.FromPassphrase(Passphrase)).ListRestorePoints());
        Assert.True(File.Exists(catalog));
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

        using (var tui = new TmuxSession($"dotnet {ProxybackupDll} console --config {config}", width: 180, height: 45))
        {
            await tui.WaitForAsync("No configuration at", TimeSpan.FromSeconds(60));
            tui.Send("c");
            await tui.WaitForAsync("Connection to OpenNebula");
            tui.Send("C-a");
            tui.Send("-l", $"https://127.0.0.1:{frontEnd.Endpoint.Port}/RPC2");
            tui.Send("Tab", "Tab");
            tui.Send("-l", "pw");
            tui.Send("M-r");                              // Alt+R: fetch the certificate
            await tui.WaitForAsync("CN=front-end.cloud.example, issued by CN=front-end.cloud.example", TimeSpan.FromSeconds(60));
            await tui.WaitForAsync(fingerprint);          // in the pin field, saved only with Save
            Assert.False(File.Exists(config));
            tui.Send("M-s");
            await tui.WaitForAsync("Connection saved to", TimeSpan.FromSeconds(60));
            tui.Send("Escape");
        }

        var saved = JsonDocument.Parse(await File.ReadAllTextAsync(config)).RootElement.GetProperty("OpenNebula");
        Assert.Equal(fingerprint, saved.GetProperty("PinnedCertificateSha256").GetString());
        Assert.Equal(JsonValueKind.Null, saved.GetProperty("CaCertificateFile").ValueKind);
    }
}
