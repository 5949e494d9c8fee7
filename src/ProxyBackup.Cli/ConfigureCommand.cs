using System.CommandLine;
using ProxyBackup.Engine;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup configure`: the console (`proxybackup console`), also when there is no configuration
/// yet; with --from-context, the first boot's setup from OpenNebula's context without a screen.
/// </summary>
internal static class ConfigureCommand
{
    public static Command Build()
    {
        var fromContext = new Option<bool>("--from-context") { Description = "No UI: first-boot setup from OpenNebula's context (VMID, PROXYBACKUP_*) and the environment; an existing configuration is kept." };
        var contextFile = new Option<string?>("--context-file") { Description = "Read the context variables from this file instead of the one-context locations." };
        var c = new Command("configure", "Set up the appliance: the console (connection and proxy VM, storage, repository, policies), also without a configuration yet; --from-context at first boot.") { fromContext, contextFile, StorageCommand.Fstab };
        c.Options.Add(DaemonCommand.ConfigFile);
        c.SetAction(async (p, ct) => p.GetValue(fromContext)
            ? SeedFromContext(p.GetValue(DaemonCommand.ConfigFile)!, p.GetValue(contextFile))
            : await ConsoleCommand.RunAsync(p.GetValue(DaemonCommand.ConfigFile)!, p.GetValue(StorageCommand.Fstab)!, ct).ConfigureAwait(false));
        return c;
    }

    /// <summary>
    /// What the contextualization hook runs at first boot: the appliance template's user inputs
    /// (PROXYBACKUP_ENDPOINT, _USER, _PASSWORD, _REPOSITORY) and VMID become the configuration.
    /// </summary>
    private static int SeedFromContext(string configPath, string? contextFile)
    {
        if (File.Exists(configPath))
        {
            Console.WriteLine($"{configPath} exists; nothing changed (use 'proxybackup console' to edit it).");
            return 0;
        }
        var vars = new Dictionary<string, string>(ProxyIdentity.ContextVariables(contextFile is null ? null : [contextFile]), StringComparer.Ordinal);
        foreach (var name in new[] { "PROXYBACKUP_ENDPOINT", "PROXYBACKUP_USER", "PROXYBACKUP_PASSWORD", "PROXYBACKUP_REPOSITORY", "VMID" })
            if (Environment.GetEnvironmentVariable(name) is { Length: > 0 } v) vars[name] = v;
        var config = new AppConfig { SecretsFile = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configPath))!, "secrets.json") };
        var secrets = new AppSecrets();
        var set = new List<string>();
        if (vars.TryGetValue("PROXYBACKUP_ENDPOINT", out var endpoint) && endpoint.Length > 0) { config.OpenNebula.Endpoint = endpoint; set.Add("OpenNebula:Endpoint"); }
        if (vars.TryGetValue("PROXYBACKUP_USER", out var user) && user.Length > 0) { config.OpenNebula.User = user; set.Add("OpenNebula:User"); }
        if (vars.TryGetValue("VMID", out var vmid) && int.TryParse(vmid, out var id)) { config.OpenNebula.ProxyVmId = id; set.Add("OpenNebula:ProxyVmId"); }
        if (vars.TryGetValue("PROXYBACKUP_REPOSITORY", out var repo) && repo.Length > 0) { config.Repository.Path = repo; set.Add("Repository:Path"); }
        if (vars.TryGetValue("PROXYBACKUP_PASSWORD", out var password) && password.Length > 0) { secrets.OpenNebulaPassword = password; set.Add("the OpenNebula password (in the secrets file)"); }
        var problems = config.Problems();
        if (problems.Count > 0) throw new CliException($"The context gives invalid values: {string.Join("; ", problems)}.");
        config.Save(configPath);
        secrets.Save(config.SecretsFile);
        Console.WriteLine(set.Count == 0
            ? $"Wrote a default {configPath}: no context variables were found; finish with 'proxybackup console'."
            : $"Wrote {configPath} from the context: {string.Join(", ", set)}.");
        return 0;
    }
}
