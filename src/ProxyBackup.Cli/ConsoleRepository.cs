using ProxyBackup.Engine;
using ProxyBackup.Repository;
using Terminal.Gui.App;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// The console's repository screen (v): what the repository holds and what retention would forget at
/// each VM's next backup; where the repository and the catalog are; Save opens the repository there
/// (with the passphrase typed, for an encrypted one) or, when the directory holds none, creates it,
/// encrypted when asked; then writes the configuration and the 0600 secrets file. Cancel or Esc
/// writes nothing (docs/operations.md, "The console").
/// </summary>
internal sealed class ConsoleRepository(IApplication app, AppConfig config, AppSecrets secrets, string configPath)
{
    public enum Choice { Nothing, VerifyChunks, VerifyData }

    private const int Cancel = 0, VerifyChunks = 1, VerifyData = 2, Save = 3;

    /// <summary>A passphrase shorter than this is refused for a new repository.</summary>
    private const int MinimumPassphrase = 8;

    /// <summary>Runs the screen; returns the verify the operator asked for (run by the dashboard) and what its bottom line should say.</summary>
    public (Choice Choice, string Said) Run(IReadOnlyList<StatusCommand.ProtectedVm> vms)
    {
        var lines = Describe(vms);
        var shown = Math.Min(lines.Count, 14);
        var fields = new[] { "Repository directory", "Catalog file", "Passphrase", "Passphrase again" };
        var inputs = new[]
        {
            new TextField { Text = config.Repository.Path }, new TextField { Text = config.Catalog.Path },
            new TextField { Text = "", Secret = true }, new TextField { Text = "", Secret = true },
        };
        var encrypt = new CheckBox { X = 0, Y = shown + 1 + fields.Length, Text = "_Encrypt a new repository (AES-256-GCM; keep the passphrase somewhere else too: without it nobody reads the backups)" };
        var said = new Label { X = 0, Y = shown + 2 + fields.Length, Width = Dim.Fill(), Text = "Passphrase: empty keeps the stored one. Save opens the repository there, or creates it in an empty directory." };
        using var dialog = new Dialog { Title = "Repository", Width = Dim.Percent(90), Height = shown + fields.Length + 9 };
        dialog.Add(new Label { X = 0, Y = 0, Width = Dim.Fill(), Height = shown, Text = string.Join('\n', lines.Take(shown)) });
        for (var i = 0; i < fields.Length; i++)
        {
            (inputs[i].X, inputs[i].Y, inputs[i].Width) = (22, shown + 1 + i, Dim.Fill());
            dialog.Add(new Label { X = 0, Y = shown + 1 + i, Text = fields[i] + ":" }, inputs[i]);
        }
        dialog.Add(encrypt, said);
        // Alt and the underlined letter presses a button from any field.
        foreach (var text in new[] { "Cancel", "_Verify: every chunk exists", "Verify: read all _data" }) dialog.AddButton(new Button { Text = text });
        dialog.AddButton(new Button { Text = "_Save", IsDefault = true });
        while (true)
        {
            app.Run(dialog);
            switch (dialog.Result)
            {
                case VerifyChunks: return (Choice.VerifyChunks, "");
                case VerifyData: return (Choice.VerifyData, "");
                case Save:
                    try
                    {
                        return (Choice.Nothing, Apply(inputs[0].Text.Trim(), inputs[1].Text.Trim(), inputs[2].Text, inputs[3].Text, encrypt.Value == CheckState.Checked));
                    }
                    catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException)
                    {
                        said.Text = $"Not saved: {e.Message}";
                        continue;
                    }
                default: return (Choice.Nothing, "");
            }
        }
    }

    /// <summary>The repository's content, or why it cannot be read.</summary>
    private List<string> Describe(IReadOnlyList<StatusCommand.ProtectedVm> vms)
    {
        var lines = new List<string>();
        if (!config.Repository.Holds(secrets))
        {
            lines.Add($"No repository in {config.Repository.Path} yet: type where it goes (its own disk: s, storage) and Save creates it.");
            return lines;
        }
        try
        {
            var repository = config.Repository.Open(secrets);
            var stats = repository.Stats();
            lines.Add($"{repository.Root}: {stats.RestorePoints} restore point(s) of {stats.Sources.Count} VM(s), logical {CliFormat.Bytes(stats.LogicalBytes)}, stored {CliFormat.Bytes(stats.StoredBytes)} in {stats.UniqueChunks} chunks");
            lines.Add($"dedup {stats.DedupRatio:0.00}x, compression {stats.CompressionRatio:0.00}x; {(repository.Config.Encrypted ? "encrypted" : "not encrypted")}");
            lines.Add("");
            lines.Add("Retention at each VM's next backup:");
            var policies = config.Catalog.Exists ? config.Catalog.Open().Policies().ToDictionary(p => p.Name, StringComparer.Ordinal) : [];
            foreach (var vm in vms)
            {
                var policy = vm.Policies.Select(name => policies.GetValueOrDefault(name)).FirstOrDefault(p => p is { Retention.IsEmpty: false });
                if (policy is null) { lines.Add($"  VM {vm.Id} ({vm.Name}): no retention, every restore point is kept"); continue; }
                var plan = repository.ApplyRetention(policy.Retention, config.OpenNebula.Sources.Of(vm.Id), dryRun: true);
                lines.Add($"  VM {vm.Id} ({vm.Name}), policy {policy.Name}: keeps {plan.Count(d => d.Keep)}, would forget {plan.Count(d => !d.Keep)}");
            }
        }
        catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException)
        {
            lines.Add($"The repository cannot be read: {e.Message}");
        }
        return lines;
    }

    /// <summary>Opens or creates the repository as typed, then saves where it is, the catalog and the passphrase.</summary>
    private string Apply(string path, string catalog, string passphrase, string again, bool encrypt)
    {
        if (!Path.IsPathRooted(path) || !Path.IsPathRooted(catalog)) throw new CliException("the repository directory and the catalog file are absolute paths.");
        if (passphrase != again) throw new CliException("the two passphrases differ.");
        var mountPoint = config.Repository.MountFor(path);
        var stored = passphrase.Length > 0 ? passphrase : secrets.RepositoryPassphrase;
        string outcome;
        if (File.Exists(Path.Combine(path, "config")))
        {
            BackupRepository opened;
            try { opened = BackupRepository.Open(path, stored is { Length: > 0 } ? RepositoryKey.FromPassphrase(stored) : null, mountPoint: mountPoint); }
            catch (WrongKeyException) { throw new CliException(stored is null ? $"{path} is encrypted: type its passphrase." : $"the passphrase does not open {path}."); }
            outcome = $"Opened the repository {opened.Root}: {opened.ListRestorePoints().Count} restore point(s), {(opened.Config.Encrypted ? "encrypted" : "not encrypted")}.";
        }
        else
        {
            if (encrypt && (passphrase.Length < MinimumPassphrase)) throw new CliException($"a new encrypted repository needs a passphrase of {MinimumPassphrase} characters at least, typed twice.");
            if (!encrypt && passphrase.Length > 0) throw new CliException("a passphrase was typed but Encrypt is not ticked: tick it, or clear the passphrase.");
            var created = BackupRepository.Create(path, new RepositoryCreateOptions { Key = encrypt ? RepositoryKey.FromPassphrase(passphrase) : null, MountPoint = mountPoint });
            outcome = $"Created the repository {created.Root} ({(encrypt ? "encrypted" : "not encrypted")}).";
        }
        var moved = path != config.Repository.Path || catalog != config.Catalog.Path;
        (config.Repository.Path, config.Catalog.Path) = (path, catalog);
        if (passphrase.Length > 0) secrets.RepositoryPassphrase = passphrase;
        config.Save(configPath);
        secrets.Save(config.SecretsFile!);
        return $"{outcome} Saved to {configPath}{(passphrase.Length > 0 ? $" and {config.SecretsFile} (mode 0600)" : "")}."
            + (moved ? " A running daemon reads it when it starts: systemctl restart proxybackup." : "");
    }
}
