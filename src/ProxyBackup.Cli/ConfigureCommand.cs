using System.CommandLine;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Logging.Abstractions;
using ProxyBackup.Catalog;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;
using ProxyBackup.XmlRpc;
using Spectre.Console;
using ProxyBackup.Contracts;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup configure`: the text UI an operator uses on the proxy VM's console. Every value is
/// validated where it is typed; nothing is written until "Save and exit", and then the
/// configuration and the 0600 secrets file are written whole.
/// </summary>
internal static class ConfigureCommand
{
    public static Command Build()
    {
        var fromContext = new Option<bool>("--from-context") { Description = "No UI: first-boot setup from OpenNebula's context (VMID, PROXYBACKUP_*) and the environment; an existing configuration is kept." };
        var contextFile = new Option<string?>("--context-file") { Description = "Read the context variables from this file instead of the one-context locations." };
        var fstab = new Option<string>("--fstab") { Description = "The fstab the storage screen records the repository's mount in.", DefaultValueFactory = _ => "/etc/fstab" };
        var c = new Command("configure", "Set up the appliance in a text UI: connection, proxy VM, storage, repository, policies, jobs, restore, snapshots.") { fromContext, contextFile, fstab };
        c.Options.Add(DaemonCommand.ConfigFile);
        c.SetAction(async (p, ct) => p.GetValue(fromContext)
            ? SeedFromContext(p.GetValue(DaemonCommand.ConfigFile)!, p.GetValue(contextFile))
            : await new Session(p.GetValue(DaemonCommand.ConfigFile)!, p.GetValue(fstab)!).RunAsync(ct).ConfigureAwait(false));
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
            Console.WriteLine($"{configPath} exists; nothing changed (use 'proxybackup configure' to edit it).");
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
            ? $"Wrote a default {configPath}: no context variables were found; finish with 'proxybackup configure'."
            : $"Wrote {configPath} from the context: {string.Join(", ", set)}.");
        return 0;
    }

    private sealed class Session(string configPath, string fstabPath)
    {
        private AppConfig _config = new();
        private AppSecrets _secrets = new();
        private bool _dirty;

        public async Task<int> RunAsync(CancellationToken ct)
        {
            if (File.Exists(configPath))
            {
                _config = AppConfig.Load(configPath);
                if (File.Exists(_config.SecretsFile)) _secrets = AppSecrets.Load(_config.SecretsFile!);
            }
            else
            {
                _config.SecretsFile = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(configPath))!, "secrets.json");
                Seed();
            }
            while (true)
            {
                AnsiConsole.Clear();
                AnsiConsole.Write(new Rule($"[bold]ProxyBackup[/] configuration — {Markup.Escape(configPath)}").LeftJustified());
                var choice = AnsiConsole.Prompt(new SelectionPrompt<string>()
                    .Title("What do you want to set up?").PageSize(12)
                    .AddChoices(Menu.Connection, Menu.Proxy, Menu.Storage, Menu.Repository, Menu.Policies, Menu.Jobs, Menu.Restore, Menu.Snapshots, Menu.Save, Menu.Quit));
                try
                {
                    switch (choice)
                    {
                        case Menu.Connection: await ConnectionAsync(ct).ConfigureAwait(false); break;
                        case Menu.Proxy: await ProxyAsync(ct).ConfigureAwait(false); break;
                        case Menu.Storage: StorageMenu(); break;
                        case Menu.Repository: RepositoryMenu(); break;
                        case Menu.Policies: await PoliciesAsync(ct).ConfigureAwait(false); break;
                        case Menu.Jobs: await JobsAsync(ct).ConfigureAwait(false); break;
                        case Menu.Restore: await RestoreAsync(ct).ConfigureAwait(false); break;
                        case Menu.Snapshots: await SnapshotsAsync(ct).ConfigureAwait(false); break;
                        case Menu.Save:
                            _config.Save(configPath);
                            _secrets.Save(_config.SecretsFile!);
                            AnsiConsole.MarkupLine($"[green]Saved[/] {Markup.Escape(configPath)} and {Markup.Escape(_config.SecretsFile!)} (mode 0600).");
                            return 0;
                        case Menu.Quit:
                            if (_dirty && !AnsiConsole.Confirm("Discard the changes?", false)) continue;
                            return 0;
                    }
                }
                catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
                {
                    AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/]");
                    Pause();
                }
            }
        }

        private static class Menu
        {
            public const string Connection = "Connection (OpenNebula endpoint, user, password, TLS, test)";
            public const string Proxy = "Proxy VM";
            public const string Storage = "Storage (the repository's disk or NFS share)";
            public const string Repository = "Repository";
            public const string Policies = "Policies";
            public const string Jobs = "Jobs";
            public const string Restore = "Restore";
            public const string Snapshots = "Snapshots";
            public const string Save = "Save and exit";
            public const string Quit = "Exit without saving";
        }

        /// <summary>First run: the endpoint, user and proxy VM may come from OpenNebula's context or the environment.</summary>
        private void Seed()
        {
            if (Environment.GetEnvironmentVariable("ONE_XMLRPC") is { Length: > 0 } endpoint) _config.OpenNebula.Endpoint = endpoint;
            _config.OpenNebula.ProxyVmId = ProxyIdentity.FromContext();
        }

        private static void Pause() => AnsiConsole.Prompt(new TextPrompt<string>("[grey]Press Enter to go back[/]").AllowEmpty());

        private async Task ConnectionAsync(CancellationToken ct)
        {
            var o = _config.OpenNebula;
            o.Endpoint = AnsiConsole.Prompt(new TextPrompt<string>("OpenNebula XML-RPC endpoint:").DefaultValue(o.Endpoint)
                .Validate(v => Uri.TryCreate(v, UriKind.Absolute, out var u) && u.Scheme is "http" or "https" ? ValidationResult.Success() : ValidationResult.Error("[red]An http(s) URL such as http://front-end:2633/RPC2[/]")));
            o.User = AnsiConsole.Prompt(new TextPrompt<string>("User:").DefaultValue(o.User)
                .Validate(v => v.Length > 0 && !v.Contains(':') ? ValidationResult.Success() : ValidationResult.Error("[red]A user name without ':'[/]")));
            var password = AnsiConsole.Prompt(new TextPrompt<string>(_secrets.OpenNebulaPassword is null ? "Password or login token:" : "Password or login token (Enter keeps the current one):")
                .Secret().AllowEmpty());
            if (password.Length > 0) _secrets.OpenNebulaPassword = password;
            var endpoint = new Uri(o.Endpoint);
            if (endpoint.Scheme == Uri.UriSchemeHttps) await TrustAsync(o, endpoint, ct).ConfigureAwait(false);
            else (o.CaCertificateFile, o.PinnedCertificateSha256) = (null, null);
            _dirty = true;
            if (AnsiConsole.Confirm("Test the connection now?", true)) await TestAsync(ct).ConfigureAwait(false);
        }

        /// <summary>How the front-end's certificate is trusted: the system's CAs, a private CA, or a pinned certificate.</summary>
        private static async Task TrustAsync(AppConfig.OpenNebulaSection o, Uri endpoint, CancellationToken ct)
        {
            const string PublicCa = "A public CA (the system's trust store)";
            const string PrivateCa = "A private CA (a PEM file on this VM)";
            const string Pin = "Pin the certificate the front-end presents";
            var current = o.PinnedCertificateSha256 is not null ? Pin : o.CaCertificateFile is not null ? PrivateCa : PublicCa;
            var choice = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Who vouches for the front-end's TLS certificate?")
                .AddChoices(new[] { current }.Concat(new[] { PublicCa, PrivateCa, Pin }.Where(c => c != current))));
            switch (choice)
            {
                case PublicCa:
                    (o.CaCertificateFile, o.PinnedCertificateSha256) = (null, null);
                    break;
                case PrivateCa:
                    o.CaCertificateFile = AnsiConsole.Prompt(new TextPrompt<string>("CA certificate file (PEM):").DefaultValue(o.CaCertificateFile ?? "/etc/proxybackup/ca.pem")
                        .Validate(v => File.Exists(v) ? ValidationResult.Success() : ValidationResult.Error("[red]That file does not exist[/]")));
                    o.PinnedCertificateSha256 = null;
                    break;
                default:
                    X509Certificate2 presented;
                    try { presented = await ServerCertificate.FetchAsync(endpoint, TimeSpan.FromSeconds(15), ct).ConfigureAwait(false); }
                    catch (XmlRpcTransportException e)
                    {
                        AnsiConsole.MarkupLine($"[red]{Markup.Escape(e.Message)}[/] The trust setting is unchanged.");
                        return;
                    }
                    using (presented)
                    {
                        var fingerprint = ServerCertificate.Fingerprint(presented);
                        AnsiConsole.MarkupLine($"The front-end presents [bold]{Markup.Escape(presented.Subject)}[/], issued by {Markup.Escape(presented.Issuer)}, valid until {presented.NotAfter:yyyy-MM-dd}.");
                        AnsiConsole.MarkupLine($"SHA-256 fingerprint: [bold]{fingerprint}[/]");
                        AnsiConsole.MarkupLine("[grey]Compare it on the front-end: openssl x509 -noout -fingerprint -sha256 -in <its certificate>. When the certificate is renewed, pin the new one here.[/]");
                        if (AnsiConsole.Confirm("Pin this certificate?", false))
                            (o.CaCertificateFile, o.PinnedCertificateSha256) = (null, fingerprint);
                    }
                    break;
            }
        }

        private OneClient Client()
        {
            if (string.IsNullOrEmpty(_secrets.OpenNebulaPassword)) throw new CliException("Set the password in Connection first.");
            // A person waits at the screen: one short attempt, not the daemon's retries.
            return new OneClient(_config.ClientOptions(_secrets) with { Retries = 0, CallTimeout = TimeSpan.FromSeconds(15) });
        }

        private async Task TestAsync(CancellationToken ct)
        {
            using var client = Client();
            var version = await client.SystemVersionAsync(ct).ConfigureAwait(false);
            var user = await client.UserInfoAsync(ct: ct).ConfigureAwait(false);
            AnsiConsole.MarkupLine($"[green]Connected[/]: OpenNebula {Markup.Escape(version)}, user {Markup.Escape(user.Name)} (ID {user.Id}, group {Markup.Escape(user.GroupName)}).");
            if (_config.OpenNebula.ProxyVmId is { } id)
            {
                var proxy = await client.VmInfoAsync(id, ct).ConfigureAwait(false);
                AnsiConsole.MarkupLine($"Proxy VM {id}: [bold]{Markup.Escape(proxy.Name)}[/], {proxy.StateName}{(proxy.StateName == "RUNNING" ? "" : " [red](must be RUNNING)[/]")}.");
            }
            else AnsiConsole.MarkupLine("[yellow]No proxy VM set yet (Proxy VM menu).[/]");
            Pause();
        }

        private async Task ProxyAsync(CancellationToken ct)
        {
            var detected = ProxyIdentity.FromContext();
            AnsiConsole.MarkupLine(detected is { } d ? $"OpenNebula's context says this VM is [bold]{d}[/]." : "No VMID in OpenNebula's context files here.");
            _config.OpenNebula.ProxyVmId = AnsiConsole.Prompt(new TextPrompt<int>("Proxy VM ID:").DefaultValue(_config.OpenNebula.ProxyVmId ?? detected ?? 0)
                .Validate(v => v >= 0 ? ValidationResult.Success() : ValidationResult.Error("[red]A VM ID is 0 or more[/]")));
            _dirty = true;
            using var client = Client();
            var vm = await ProxyIdentity.VerifyAsync(client, _config.OpenNebula.ProxyVmId.Value, ct).ConfigureAwait(false);
            AnsiConsole.MarkupLine($"[green]Proxy VM {vm.Id} ({Markup.Escape(vm.Name)}) is RUNNING[/] on {Markup.Escape(vm.CurrentHistory?.HostName ?? "?")}.");
            Pause();
        }

        /// <summary>
        /// The repository's own disk or share (docs/operations.md, "Repository storage"). Formatting and
        /// mounting are actions, done when confirmed after a summary, as a restore is; the mount point
        /// they need is recorded in the saved configuration at once, so that it guards the disk even if
        /// the session's other changes are discarded.
        /// </summary>
        private void StorageMenu()
        {
            var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(_config.Repository.Path));
            AnsiConsole.MarkupLine($"[yellow]{Markup.Escape(StorageCommand.State(_config))}[/]");
            const string back = "Back", nfs = "An NFS export...", other = "Another device...";
            var disks = StorageCommand.BlockDisks.Candidates();
            var choices = disks.Select(d => $"{d.Path}  {CliFormat.Bytes(d.Size)}  {d.Content}").Concat([other, nfs, back]).ToList();
            var choice = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Which disk holds the repository?").AddChoices(choices));
            if (choice == back) return;
            var setup = new StorageCommand.StorageSetup(target, fstabPath);
            string result;
            if (choice == nfs)
            {
                var export = AnsiConsole.Prompt(new TextPrompt<string>("NFS export (host:/path):"));
                if (!AnsiConsole.Confirm($"Mount {Markup.Escape(export)} at {Markup.Escape(target)} and record it in {Markup.Escape(fstabPath)}?", false)) return;
                result = setup.Nfs(export);
            }
            else
            {
                var path = choice == other ? AnsiConsole.Prompt(new TextPrompt<string>("Device (e.g. /dev/vdb):")) : disks[choices.IndexOf(choice)].Path;
                var (format, summary) = StorageCommand.Plan(path, target, fstabPath);
                if (!AnsiConsole.Confirm(Markup.Escape(summary), false)) return;
                result = setup.Disk(path, formatIfBlank: format);
            }
            _config.Repository.MountPoint = target;
            StorageCommand.RecordMountPoint(configPath, target);
            AnsiConsole.MarkupLine($"[green]{Markup.Escape(result)}[/]");
            AnsiConsole.MarkupLine(Markup.Escape(StorageCommand.RepositoryHint(_config, configPath)));
            Pause();
        }

        private void RepositoryMenu()
        {
            _config.Repository.Path = AnsiConsole.Prompt(new TextPrompt<string>("Repository directory (local disk or NFS mount):").DefaultValue(_config.Repository.Path)
                .Validate(v => Path.IsPathRooted(v) ? ValidationResult.Success() : ValidationResult.Error("[red]An absolute path[/]")));
            _dirty = true;
            var path = _config.Repository.Path;
            var probe = Directory.Exists(path) ? path : Path.GetDirectoryName(path) ?? "/";
            if (Directory.Exists(probe)) AnsiConsole.MarkupLine($"Free space there: [bold]{CliFormat.Bytes(new DriveInfo(probe).AvailableFreeSpace)}[/].");
            if (File.Exists(Path.Combine(path, "config")))
            {
                BackupRepository repo;
                try
                {
                    repo = BackupRepository.Open(path, _secrets.PassphraseKey(), mountPoint: _config.Repository.MountFor(path));
                }
                catch (WrongKeyException)
                {
                    _secrets.RepositoryPassphrase = AnsiConsole.Prompt(new TextPrompt<string>("Repository passphrase:").Secret());
                    repo = BackupRepository.Open(path, RepositoryKey.FromPassphrase(_secrets.RepositoryPassphrase), mountPoint: _config.Repository.MountFor(path));
                }
                AnsiConsole.MarkupLine($"[green]Opened[/] repository {Markup.Escape(repo.Root)}: {repo.ListRestorePoints().Count} restore point(s), {(repo.Config.Encrypted ? "encrypted" : "not encrypted")}.");
            }
            else if (AnsiConsole.Confirm($"There is no repository in {Markup.Escape(path)}. Create one?", true))
            {
                RepositoryKey? key = null;
                if (AnsiConsole.Confirm("Encrypt it (AES-256-GCM)? Keep the passphrase safe elsewhere: without it nobody can read the backups.", false))
                {
                    var first = AnsiConsole.Prompt(new TextPrompt<string>("Passphrase:").Secret().Validate(v => v.Length >= 8 ? ValidationResult.Success() : ValidationResult.Error("[red]8 characters at least[/]")));
                    var again = AnsiConsole.Prompt(new TextPrompt<string>("Passphrase again:").Secret());
                    if (first != again) throw new CliException("The passphrases differ; nothing was created.");
                    key = RepositoryKey.FromPassphrase(first);
                    _secrets.RepositoryPassphrase = first;
                }
                var repo = BackupRepository.Create(path, new RepositoryCreateOptions { Key = key, MountPoint = _config.Repository.MountFor(path) });
                AnsiConsole.MarkupLine($"[green]Created[/] repository {Markup.Escape(repo.Root)} ({(repo.Config.Encrypted ? "encrypted" : "not encrypted")}).");
            }
            Pause();
        }

        private SqliteCatalog Catalog() => new(_config.Catalog.Path);

        private async Task PoliciesAsync(CancellationToken ct)
        {
            var catalog = Catalog();
            var table = new Table().AddColumns("Name", "Enabled", "Schedule", "Selection", "Retention");
            foreach (var p in catalog.Policies())
                table.AddRow(Markup.Escape(p.Name), p.Enabled ? "yes" : "no", Markup.Escape($"{p.Schedule} {p.TimeZone}"), Markup.Escape(Describe(p.Selection)), $"last {p.Retention.KeepLast}, daily {p.Retention.KeepDaily}, weekly {p.Retention.KeepWeekly}, monthly {p.Retention.KeepMonthly}");
            AnsiConsole.Write(table);
            var action = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Policies").AddChoices("Create or edit a policy", "Delete a policy", "Back"));
            if (action == "Delete a policy")
            {
                var names = catalog.Policies().Select(p => p.Name).ToList();
                if (names.Count == 0) return;
                var name = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Delete which policy?").AddChoices(names));
                if (AnsiConsole.Confirm($"Delete policy {Markup.Escape(name)}? Its restore points stay.", false)) catalog.RemovePolicy(name);
                return;
            }
            if (action == "Back") return;
            var policyName = AnsiConsole.Prompt(new TextPrompt<string>("Policy name:").Validate(v => ProtectionPolicyRules.IsValidName(v) ? ValidationResult.Success() : ValidationResult.Error("[red]Letters, digits, space, '.', '_' or '-'[/]")));
            var existing = catalog.Policies().FirstOrDefault(p => p.Name == policyName);
            var zone = AnsiConsole.Prompt(new TextPrompt<string>("Time zone:").DefaultValue(existing?.TimeZone ?? "UTC")
                .Validate(v => TimeZoneInfo.TryFindSystemTimeZoneById(v, out _) ? ValidationResult.Success() : ValidationResult.Error("[red]An IANA time zone such as Europe/Berlin[/]")));
            var schedule = AnsiConsole.Prompt(new TextPrompt<string>("Schedule (cron: minute hour day month weekday, or @daily):").DefaultValue(existing?.Schedule ?? "0 2 * * *")
                .Validate(v => CronSchedule.TryParse(v, TimeZoneInfo.FindSystemTimeZoneById(zone), out _, out var error) ? ValidationResult.Success() : ValidationResult.Error($"[red]{Markup.Escape(error!)}[/]")));
            var kind = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Select VMs by").AddChoices("Template attribute (e.g. BACKUP_POLICY=gold)", "Label", "Name pattern", "VM IDs or names"));
            var selection = kind switch
            {
                "Label" => new VmSelection { Label = AnsiConsole.Ask<string>("Label:") },
                "Name pattern" => new VmSelection { NamePattern = AnsiConsole.Ask<string>("Name pattern (* and ?):") },
                "VM IDs or names" => VmSelection.ByIdOrName(AnsiConsole.Ask<string>("VM IDs or names (comma separated):").Split(',')),
                _ => AttributeSelection(AnsiConsole.Ask("Attribute=value:", "BACKUP_POLICY=gold")),
            };
            var retention = new RetentionPolicy
            {
                KeepLast = AnsiConsole.Ask("Keep last:", existing?.Retention.KeepLast ?? 7),
                KeepDaily = AnsiConsole.Ask("Keep daily:", existing?.Retention.KeepDaily ?? 7),
                KeepWeekly = AnsiConsole.Ask("Keep weekly:", existing?.Retention.KeepWeekly ?? 4),
                KeepMonthly = AnsiConsole.Ask("Keep monthly:", existing?.Retention.KeepMonthly ?? 6),
            };
            var policy = new ProtectionPolicy { Name = policyName, Schedule = schedule, TimeZone = zone, Selection = selection, Retention = retention, FullEveryRuns = AnsiConsole.Ask("Full backup every N runs (0: only the first):", existing?.FullEveryRuns ?? 0) };
            var problems = policy.Problems();
            if (problems.Count > 0) throw new CliException($"Not saved: {string.Join("; ", problems)}.");
            using (var client = Client())
            {
                var matched = (await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false)).Where(v => v.Id != _config.OpenNebula.ProxyVmId && policy.Selection.Matches(v)).ToList();
                AnsiConsole.MarkupLine($"Today this policy selects [bold]{matched.Count}[/] VM(s): {Markup.Escape(string.Join(", ", matched.Select(v => $"{v.Id} {v.Name}")))}");
            }
            AnsiConsole.MarkupLine($"Next run: {policy.CompiledSchedule().Next(DateTimeOffset.UtcNow):yyyy-MM-dd HH:mm}Z.");
            if (AnsiConsole.Confirm("Save this policy?", true))
            {
                ProtectionPolicyRules.Save(catalog, policy);
                AnsiConsole.MarkupLine("[green]Policy saved.[/]");
                Pause();
            }
        }

        private static VmSelection AttributeSelection(string text)
        {
            var parts = text.Split('=', 2);
            return new VmSelection { AttributeName = parts[0].Trim(), AttributeValue = parts.Length > 1 ? parts[1].Trim() : null };
        }

        private static string Describe(VmSelection s) =>
            string.Join(" or ", new[] { s.VmIds.Count > 0 ? $"ids {string.Join(',', s.VmIds)}" : null, s.VmNames.Count > 0 ? $"names {string.Join(',', s.VmNames)}" : null,
                s.NamePattern is { } n ? $"name {n}" : null,
                s.Label is { } l ? $"label {l}" : null, s.AttributeName is { } a ? $"{a}={s.AttributeValue ?? "*"}" : null }.OfType<string>());

        private async Task JobsAsync(CancellationToken ct)
        {
            var status = await DaemonApi.AskAsync(_config.Daemon.Socket, new { op = "status" }, ct).ConfigureAwait(false);
            if (status is null) AnsiConsole.MarkupLine("[yellow]The daemon is not running: no live progress.[/]");
            else
            {
                var running = status["running"]!.AsArray();
                AnsiConsole.MarkupLine($"Daemon: {running.Count} running, {status["waiting"]!.AsArray().Count} waiting.");
                foreach (var r in running) AnsiConsole.MarkupLine("  " + Markup.Escape(CliFormat.RunningJob(r!)));
            }
            var recent = Catalog().Recent(20);
            var table = new Table().AddColumns("Job", "Kind", "VM", "State", "Started (UTC)", "Read", "Stored", "Error");
            foreach (var j in recent)
                table.AddRow(j.Id, j.Kind, j.VmId.ToString(System.Globalization.CultureInfo.InvariantCulture), j.State, j.Started.ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture),
                    CliFormat.Bytes(j.BytesRead), CliFormat.Bytes(j.BytesStored), Markup.Escape(j.Error ?? ""));
            AnsiConsole.Write(table);
            var choices = new List<string> { "Back" };
            if (recent.Count > 0) choices.Insert(0, "Show a job's log");
            if (status?["running"]!.AsArray().Count > 0)
            {
                choices.Insert(0, "Cancel a running backup");
                choices.Insert(0, "Watch the running backups");
            }
            switch (AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Jobs").AddChoices(choices)))
            {
                case "Show a job's log":
                    var job = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Which job?").AddChoices(recent.Select(j => j.Id)));
                    foreach (var (time, level, message) in Catalog().LogOf(job))
                        AnsiConsole.MarkupLine($"{time:HH:mm:ss} {(level == "error" ? "[red]" : level == "warning" ? "[yellow]" : "[grey]")}{level}[/] {Markup.Escape(message)}");
                    Pause();
                    break;
                case "Watch the running backups":
                    await WatchAsync(ct).ConfigureAwait(false);
                    break;
                case "Cancel a running backup":
                    var vm = AnsiConsole.Prompt(new SelectionPrompt<int>().Title("Cancel the backup of which VM?").AddChoices(status!["running"]!.AsArray().Select(r => (int)r!["vm"]!)));
                    var answer = await DaemonApi.AskAsync(_config.Daemon.Socket, new { op = "cancel", vm }, ct).ConfigureAwait(false);
                    AnsiConsole.MarkupLine(answer?["cancelled"]?.GetValue<bool>() == true ? $"The backup of VM {vm} is being stopped; it cleans up after itself." : $"VM {vm} has no running backup any more.");
                    Pause();
                    break;
            }
        }

        /// <summary>The daemon's running jobs, refreshed every second until Enter or until none is left.</summary>
        private async Task WatchAsync(CancellationToken ct)
        {
            await AnsiConsole.Live(new Text("")).StartAsync(async live =>
            {
                while (!ct.IsCancellationRequested)
                {
                    if (Console.KeyAvailable && Console.ReadKey(intercept: true).Key == ConsoleKey.Enter) return;
                    var status = await DaemonApi.AskAsync(_config.Daemon.Socket, new { op = "status" }, ct).ConfigureAwait(false);
                    var running = status?["running"]?.AsArray() ?? [];
                    var waiting = status?["waiting"]?.AsArray().Count ?? 0;
                    var lines = running.Select(r => Markup.Escape(CliFormat.RunningJob(r!))).ToList();
                    lines.Add(status is null ? "[yellow]The daemon stopped answering.[/]"
                        : running.Count == 0 ? "[green]No backup is running any more.[/]"
                        : $"[grey]{waiting} waiting. Enter to go back.[/]");
                    live.UpdateTarget(new Markup(string.Join('\n', lines)));
                    if (status is null || running.Count == 0) return;
                    await Task.Delay(TimeSpan.FromSeconds(1), ct).ConfigureAwait(false);
                }
            }).ConfigureAwait(false);
        }

        private async Task<EngineHost> EngineAsync(CancellationToken ct) =>
            await EngineHost.FromConfigAsync(_config, _secrets, NullLoggerFactory.Instance, ct).ConfigureAwait(false);

        private async Task RestoreAsync(CancellationToken ct)
        {
            using var host = await EngineAsync(ct).ConfigureAwait(false);
            var points = host.Repository.ListRestorePoints();
            if (points.Count == 0) throw new CliException("The repository has no restore point yet.");
            var source = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Which VM?").AddChoices(points.Select(p => $"{p.Source} {p.Tags.GetValueOrDefault("vm_name")}").Distinct()));
            var mine = points.Where(p => source.StartsWith(p.Source + " ", StringComparison.Ordinal)).Reverse().ToList();
            var pointId = AnsiConsole.Prompt(new SelectionPrompt<string>().Title("Which restore point?").AddChoices(mine.Select(p => $"{p.Id}  {p.Time:yyyy-MM-dd HH:mm}Z  {p.Tags.GetValueOrDefault("kind")}")));
            var point = mine.First(p => pointId.StartsWith(p.Id, StringComparison.Ordinal));
            var imageDs = AnsiConsole.Ask("Image datastore ID for the restored disks:", 1);
            var name = AnsiConsole.Ask("Name of the new VM:", $"{point.Tags.GetValueOrDefault("vm_name")}-restored");
            var nics = AnsiConsole.Prompt(new SelectionPrompt<NicMode>().Title("Network").AddChoices(NicMode.NoIp, NicMode.Keep, NicMode.NoNic));
            var result = await ProgressDisplay.RunAsync("restore", progress => host.Restore.RestoreVmAsync(point, new RestoreVmOptions { ImageDatastoreId = imageDs, Name = name, Nics = nics }, progress, ct)).ConfigureAwait(false);
            AnsiConsole.MarkupLine($"[green]Restored[/] as VM {result.VmId}, RUNNING.");
            Pause();
        }

        private async Task SnapshotsAsync(CancellationToken ct)
        {
            using var host = await EngineAsync(ct).ConfigureAwait(false);
            var vmId = AnsiConsole.Ask<int>("VM ID:");
            var snaps = await host.Snapshots.ListAsync(vmId, ct).ConfigureAwait(false);
            var table = new Table().AddColumns("Disk", "Snapshot", "Name", "Date", "Active");
            foreach (var (disk, s) in snaps)
                table.AddRow(disk.ToString(System.Globalization.CultureInfo.InvariantCulture), s.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), Markup.Escape(s.Name ?? ""), DateTimeOffset.FromUnixTimeSeconds(s.Date).ToString("yyyy-MM-dd HH:mm", System.Globalization.CultureInfo.InvariantCulture), s.Active ? "yes" : "");
            AnsiConsole.Write(table);
            var actions = snaps.Count > 0 ? new[] { "Create a snapshot", "Revert a disk to a snapshot", "Delete a snapshot", "Back" } : ["Create a snapshot", "Back"];
            var action = AnsiConsole.Prompt(new SelectionPrompt<string>().AddChoices(actions));
            switch (action)
            {
                case "Create a snapshot":
                    AnsiConsole.MarkupLine($"[green]Snapshot {await host.Snapshots.CreateAsync(vmId, AnsiConsole.Ask("Disk ID:", 0), AnsiConsole.Ask("Name:", "manual"), ct).ConfigureAwait(false)} taken.[/]");
                    break;
                case "Revert a disk to a snapshot":
                    var (disk, snapshot) = AnsiConsole.Prompt(new SelectionPrompt<(int Disk, DiskSnapshot Snapshot)>().Title("Revert which disk to which snapshot?")
                        .UseConverter(c => $"disk {c.Disk}: snapshot {c.Snapshot.Id} {Markup.Escape(c.Snapshot.Name ?? "")}").AddChoices(snaps));
                    if (!AnsiConsole.Confirm($"Disk {disk} loses everything written since snapshot {snapshot.Id}. Revert?", false)) return;
                    // OpenNebula reverts only a powered-off VM: the operator decides whether to stop it.
                    var powerOff = AnsiConsole.Confirm("If the VM is running, power it off for the revert and resume it afterwards?", false);
                    var hard = powerOff && AnsiConsole.Confirm("Power it off hard (no ACPI shutdown of the guest)?", false);
                    await host.Snapshots.RevertAsync(vmId, new Dictionary<int, int> { [disk] = snapshot.Id }, powerOff, hard, ct).ConfigureAwait(false);
                    AnsiConsole.MarkupLine($"[green]Disk {disk} of VM {vmId} reverted to snapshot {snapshot.Id}.[/]");
                    break;
                case "Delete a snapshot":
                    await host.Snapshots.DeleteAsync(vmId, AnsiConsole.Ask<int>("Disk ID:"), AnsiConsole.Ask<int>("Snapshot ID:"), ct).ConfigureAwait(false);
                    break;
            }
            if (action != "Back") Pause();
        }
    }
}
