using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.XmlRpc;
using Terminal.Gui.App;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// The console's connection screen (c): endpoint, user, password (hidden; empty keeps the current
/// one), the proxy VM (empty: OpenNebula's context says which VM this is), and who vouches for an https front-end's certificate (the system's CAs, a private CA file, or
/// a pinned fingerprint fetched from the front-end). Test tries the fields as typed; Save writes the
/// configuration and the 0600 secrets file whole and says whether they connect (a front-end down for
/// maintenance must not keep settings from being saved). Cancel or Esc writes nothing
/// (docs/operations.md, "The console").
/// </summary>
internal sealed class ConsoleConnection(IApplication app, AppConfig config, AppSecrets secrets, string configPath)
{
    private const int Cancel = 0, Fetch = 1, Test = 2, Save = 3;

    /// <summary>Runs the screen; returns what the dashboard's bottom line should say.</summary>
    public string Run(CancellationToken ct)
    {
        var o = config.OpenNebula;
        var labels = new[] { "Endpoint", "User", "Password or token", "Proxy VM ID", "CA certificate file", "Pinned SHA-256" };
        var inputs = new[]
        {
            new TextField { Text = o.Endpoint }, new TextField { Text = o.User }, new TextField { Text = "", Secret = true },
            new TextField { Text = o.ProxyVmId?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "" },
            new TextField { Text = o.CaCertificateFile ?? "" }, new TextField { Text = o.PinnedCertificateSha256 ?? "" },
        };
        // One line: a label keeps the height of its first text (Terminal.Gui 2.5), so a second line would not show.
        var said = new Label { X = 0, Y = labels.Length + 1, Width = Dim.Fill(), Text = "Password: empty keeps the current one. Proxy VM: empty, the context's VMID. CA file or pin: https only; both empty: the system's CAs." };
        using var dialog = new Dialog { Title = "Connection to OpenNebula", Width = Dim.Percent(90), Height = labels.Length + 9 };
        for (var i = 0; i < labels.Length; i++)
        {
            (inputs[i].X, inputs[i].Y, inputs[i].Width) = (22, i, Dim.Fill());
            dialog.Add(new Label { X = 0, Y = i, Text = labels[i] + ":" }, inputs[i]);
        }
        dialog.Add(said);
        // Alt and the underlined letter presses a button from any field.
        foreach (var text in new[] { "Cancel", "Ce_rtificate", "_Test" }) dialog.AddButton(new Button { Text = text });
        dialog.AddButton(new Button { Text = "_Save", IsDefault = true });
        while (true)
        {
            app.Run(dialog);
            if (dialog.Result is null or Cancel) return "";
            var (edited, password) = (Edited(inputs), inputs[2].Text.Length > 0 ? inputs[2].Text : secrets.OpenNebulaPassword);
            List<string> problems = [.. edited.Problems()];
            if (edited.OpenNebula.ProxyVmId is null && inputs[3].Text.Trim().Length > 0) problems.Add("the proxy VM ID is a number (0 or more)");
            if (problems.Count > 0) { said.Text = $"Not valid: {string.Join("; ", problems)}"; continue; }
            switch (dialog.Result)
            {
                case Fetch:
                    said.Text = FetchCertificate(edited, inputs[5], ct);
                    continue;
                case Test:
                    said.Text = TestConnection(edited, password, ct);
                    continue;
                case Save:
                    // Saved also when it does not connect (a front-end down for maintenance); the outcome is said.
                    var outcome = TestConnection(edited, password, ct);
                    (config.OpenNebula, secrets.OpenNebulaPassword) = (edited.OpenNebula, password);
                    config.Save(configPath);
                    secrets.Save(config.SecretsFile!);
                    return $"Connection saved to {configPath} and {config.SecretsFile} (mode 0600). {outcome}";
            }
        }
    }

    /// <summary>The configuration as the fields would make it (a copy: nothing changes before Save).</summary>
    private AppConfig Edited(TextField[] inputs)
    {
        static string? Text(TextField t) => t.Text.Trim().Length == 0 ? null : t.Text.Trim();
        var copy = System.Text.Json.JsonSerializer.Deserialize<AppConfig>(System.Text.Json.JsonSerializer.Serialize(config))!;
        copy.SecretsFile = config.SecretsFile;
        (copy.OpenNebula.Endpoint, copy.OpenNebula.User, copy.OpenNebula.CaCertificateFile, copy.OpenNebula.PinnedCertificateSha256) =
            (inputs[0].Text.Trim(), inputs[1].Text.Trim(), Text(inputs[4]), Text(inputs[5]));
        copy.OpenNebula.ProxyVmId = int.TryParse(Text(inputs[3]), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var proxy) ? proxy : null;
        return copy;
    }

    /// <summary>One short attempt (a person waits): the version, the user, the proxy VM and whether it runs.</summary>
    private static string TestConnection(AppConfig edited, string? password, CancellationToken ct)
    {
        if (string.IsNullOrEmpty(password)) return "No password yet: type it above.";
        try
        {
            using var client = new OneClient(edited.ClientOptions(new AppSecrets { OpenNebulaPassword = password }) with { Retries = 0, CallTimeout = TimeSpan.FromSeconds(15) });
            var version = client.SystemVersionAsync(ct).GetAwaiter().GetResult();
            var user = client.UserInfoAsync(ct: ct).GetAwaiter().GetResult();
            var connected = $"Connected: OpenNebula {version}, user {user.Name} (ID {user.Id}, group {user.GroupName}).";
            if ((edited.OpenNebula.ProxyVmId ?? ProxyIdentity.FromContext()) is not { } proxyId) return connected + " No proxy VM: type its ID.";
            try
            {
                var proxy = client.VmInfoAsync(proxyId, ct).GetAwaiter().GetResult();
                return connected + $" Proxy VM {proxy.Id} ({proxy.Name}): {proxy.StateName}{(proxy.StateName == "RUNNING" ? "." : ", it must be RUNNING to attach disks.")}";
            }
            catch (OneException e)
            {
                return connected + $" Proxy VM {proxyId}: {e.Message}";
            }
        }
        catch (Exception e) when (e is OneException or HttpRequestException or IOException or ProxyBackup.Contracts.UserFacingException)
        {
            return $"Not connected: {e.Message}";
        }
    }

    /// <summary>The front-end's certificate, to compare and pin: its fingerprint goes into the pin field, saved only with Save.</summary>
    private static string FetchCertificate(AppConfig edited, TextField pin, CancellationToken ct)
    {
        var endpoint = new Uri(edited.OpenNebula.Endpoint);
        if (endpoint.Scheme != Uri.UriSchemeHttps) return "The endpoint is http: there is no certificate to trust.";
        try
        {
            using var presented = ServerCertificate.FetchAsync(endpoint, TimeSpan.FromSeconds(15), ct).GetAwaiter().GetResult();
            pin.Text = ServerCertificate.Fingerprint(presented);
            return $"{presented.Subject}, issued by {presented.Issuer}, valid until {presented.NotAfter:yyyy-MM-dd}: its SHA-256 is in the pin field; compare it on the front-end (openssl x509 -noout -fingerprint -sha256) before you save.";
        }
        catch (XmlRpcTransportException e)
        {
            return $"No certificate: {e.Message}";
        }
    }
}
