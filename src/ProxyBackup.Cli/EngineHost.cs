using System.CommandLine;
using Microsoft.Extensions.Logging;
using ProxyBackup.Catalog;
using ProxyBackup.Devices;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;

namespace ProxyBackup.Cli;

/// <summary>The engine wired from command-line options and environment: what every cloud verb needs.</summary>
internal sealed class EngineHost : IDisposable
{
    public static readonly Option<string> Endpoint = new("--endpoint") { Description = "OpenNebula XML-RPC URL ($ONE_XMLRPC).", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("ONE_XMLRPC") ?? "http://localhost:2633/RPC2", Recursive = true };
    public static readonly Option<string?> AuthFile = new("--auth-file") { Description = "File holding user:password ($ONE_AUTH, else ~/.one/one_auth).", Recursive = true };
    public static readonly Option<int?> ProxyVm = new("--proxy-vm") { Description = "ID of the proxy VM (default: VMID from OpenNebula's context).", Recursive = true };
    public static readonly Option<string> Catalog = new("--catalog") { Description = "Catalog file.", DefaultValueFactory = _ => Environment.GetEnvironmentVariable("PROXYBACKUP_CATALOG") ?? "/var/lib/proxybackup/catalog.db", Recursive = true };
    public static readonly Option<string?> DevicesDir = new("--devices-dir") { Description = "Find attached disks in this directory (the simulator's proxy) instead of sysfs.", Recursive = true };

    public static readonly Option<string[]> AllowVmDriver = new("--allow-vm-driver") { Description = "A VM driver (a host's VM_MAD) that runs KVM although its hosts do not report HYPERVISOR=kvm; repeatable.", Recursive = true, AllowMultipleArgumentsPerToken = false };

    public static IEnumerable<Option> Options => [Endpoint, AuthFile, ProxyVm, Catalog, DevicesDir, AllowVmDriver, RepositoryCommands.Repo, RepositoryCommands.PassphraseFile, RepositoryCommands.KeyFile, DaemonCommand.ConfigFile];

    /// <summary>The appliance's configuration, when it exists and no connection option was given on the command line.</summary>
    private static (AppConfig Config, AppSecrets Secrets)? Configured(ParseResult p)
    {
        if (p.GetResult(Endpoint) is { Implicit: false } || p.GetResult(AuthFile) is { Implicit: false }) return null;
        var path = p.GetValue(DaemonCommand.ConfigFile)!;
        if (!File.Exists(path)) return null;
        var config = AppConfig.Load(path);
        return (config, AppSecrets.Load(config.SecretsFile!));
    }

    private EngineHost(OneClient client, SqlCatalog catalog, BackupRepository repository, CloudSteps steps, ILoggerFactory logs, int? proxyCluster, bool servesCluster)
    {
        Client = client;
        ProxyCluster = proxyCluster;
        CatalogDb = catalog;
        Repository = repository;
        Steps = steps;
        Logs = logs;
        var logger = logs.CreateLogger("proxybackup");
        Cleaner = new CloudCleaner(steps, catalog, logger);
        Backup = new BackupJob(steps, Cleaner, catalog, catalog, repository, logger, catalog);
        Restore = new RestoreJob(steps, Cleaner, catalog, repository, logger, catalog);
        Snapshots = new SnapshotManager(steps, catalog);
        // While this process lives, what it journals is its own, also to a proxy sharing the catalog.
        _lease = catalog.KeepLease(servesCluster ? proxyCluster : null);
    }

    /// <summary>The cluster the proxy VM runs in (its last history record): which datastores it can attach images from.</summary>
    public int? ProxyCluster { get; }

    private readonly IDisposable _lease;

    public OneClient Client { get; }
    public SqlCatalog CatalogDb { get; }
    public BackupRepository Repository { get; }
    public CloudSteps Steps { get; }
    public CloudCleaner Cleaner { get; }
    public BackupJob Backup { get; }
    public RestoreJob Restore { get; }
    public SnapshotManager Snapshots { get; }
    public ILoggerFactory Logs { get; }

    /// <summary>The catalog a command works on: --catalog's file when given, else the appliance's configured catalog (a file, or a shared PostgreSQL database), else the default file.</summary>
    public static AppConfig.CatalogSection CatalogOf(ParseResult p) =>
        p.GetResult(Catalog) is not { Implicit: false } && File.Exists(p.GetValue(DaemonCommand.ConfigFile)!)
            ? AppConfig.Load(p.GetValue(DaemonCommand.ConfigFile)!).Catalog
            : new AppConfig.CatalogSection { Path = p.GetValue(Catalog)! };

    /// <summary>How this cloud's restore points are named: the configuration's OpenNebula:Cloud, else $PROXYBACKUP_CLOUD, else no name (docs/operations.md, "Clouds sharing a repository").</summary>
    public static VmSources SourcesOf(ParseResult p)
    {
        var cloud = File.Exists(p.GetValue(DaemonCommand.ConfigFile)!) ? AppConfig.Load(p.GetValue(DaemonCommand.ConfigFile)!).OpenNebula.Cloud
            : Environment.GetEnvironmentVariable("PROXYBACKUP_CLOUD");
        if (string.IsNullOrEmpty(cloud)) return new VmSources(null);
        return VmSources.IsCloudName(cloud) ? new VmSources(cloud) : throw new CliException($"'{cloud}' is not a cloud name (OpenNebula:Cloud or $PROXYBACKUP_CLOUD): 1 to 63 of a-z, 0-9 and '-'.");
    }

    public static OneClient Connect(ParseResult p)
    {
        if (Configured(p) is var (config, secrets)) return new OneClient(config.ClientOptions(secrets));
        var authFile = p.GetValue(AuthFile) ?? Environment.GetEnvironmentVariable("ONE_AUTH") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".one", "one_auth");
        if (!File.Exists(authFile)) throw new CliException($"No OpenNebula credentials: write user:password to {authFile} (mode 0600) or name a file with --auth-file.");
        if (!Uri.TryCreate(p.GetValue(Endpoint), UriKind.Absolute, out var endpoint))
            throw new CliException($"--endpoint '{p.GetValue(Endpoint)}' is not a URL (e.g. http://front-end:2633/RPC2).");
        return new OneClient(new OneClientOptions { Endpoint = endpoint, Credentials = OneCredentials.FromAuthString(SecretFile.ReadAllText(authFile)) });
    }

    /// <summary>The engine for a CLI verb; <paramref name="proxyMustRun"/> false for work that needs no attach (the cleanup of snapshots, images, templates).</summary>
    public static async Task<EngineHost> CreateAsync(ParseResult p, CancellationToken ct, bool proxyMustRun = true)
    {
        var logs = LoggerFactory.Create(b => b.AddSimpleConsole(o => { o.SingleLine = true; o.TimestampFormat = "HH:mm:ss "; }).SetMinimumLevel(LogLevel.Warning));
        try
        {
            var host = Configured(p) is var (config, secrets)
                ? await FromConfigAsync(config, secrets, logs, ct, proxyMustRun).ConfigureAwait(false)
                : await BuildAsync(Connect(p), p.GetValue(ProxyVm), new AppConfig.CatalogSection { Path = p.GetValue(Catalog)! }, () => RepositoryCommands.Open(p), p.GetValue(DevicesDir),
                    new AppConfig.OpenNebulaSection { AllowedVmDrivers = [.. p.GetValue(AllowVmDriver) ?? []], Cloud = SourcesOf(p).Cloud }, proxyMustRun, logs, ct).ConfigureAwait(false);
            // The CLI's own logger factory ends with the host; the daemon's belongs to the daemon.
            host._ownedLogs = logs;
            return host;
        }
        catch
        {
            logs.Dispose();
            throw;
        }
    }

    private IDisposable? _ownedLogs;

    /// <summary>The daemon's engine, from the configuration file and the secrets file.</summary>
    /// <param name="servesCluster">The daemon's engine: its lease tells the proxies sharing the catalog which cluster it serves (a CLI process serves none).</param>
    public static async Task<EngineHost> FromConfigAsync(AppConfig config, AppSecrets secrets, ILoggerFactory logs, CancellationToken ct, bool proxyMustRun = true, bool servesCluster = false)
    {
        var client = new OneClient(config.ClientOptions(secrets));
        return await BuildAsync(client, config.OpenNebula.ProxyVmId, config.Catalog, () => config.Repository.Open(secrets), config.Devices.Directory, config.OpenNebula, proxyMustRun, logs, ct, servesCluster).ConfigureAwait(false);
    }

    private static async Task<EngineHost> BuildAsync(OneClient client, int? proxyVm, AppConfig.CatalogSection catalogSection, Func<BackupRepository> openRepository, string? devicesDir,
        AppConfig.OpenNebulaSection cloud, bool proxyMustRun, ILoggerFactory logs, CancellationToken ct, bool servesCluster = false)
    {
        try
        {
            var proxyId = proxyVm ?? ProxyIdentity.FromContext()
                ?? throw new CliException("Which VM is the proxy? Give --proxy-vm ID or OpenNebula:ProxyVmId (no VMID was found in OpenNebula's context files).");
            var proxy = await ProxyIdentity.VerifyAsync(client, proxyId, ct, proxyMustRun).ConfigureAwait(false);
            logs.CreateLogger("proxybackup").LogInformation("Reached OpenNebula {Version} at {Endpoint} as {User}; proxy VM {Proxy} ({Name}) is {State}",
                await client.SystemVersionAsync(ct).ConfigureAwait(false), client.Endpoint, client.User, proxy.Id, proxy.Name, proxy.StateName);
            var catalog = catalogSection.Open();
            // Jobs of a process that was killed would otherwise read "running" for ever.
            catalog.MarkInterrupted();
            var repository = openRepository();
            var locator = new DeviceLocator(new DeviceLocatorOptions { DevicesDirectory = devicesDir });
            var steps = new CloudSteps(client, catalog, locator, new EngineOptions
            {
                Sources = cloud.Sources,
                ProxyVmId = proxyId, HotplugLockFile = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(catalogSection.Path))!, "hotplug.lock"),
                AllowedVmDrivers = cloud.AllowedVmDrivers.ToHashSet(StringComparer.Ordinal),
                OperationTimeout = TimeSpan.FromMinutes(cloud.OperationTimeoutMinutes), CopyTimeout = TimeSpan.FromMinutes(cloud.CopyTimeoutMinutes),
                MinimumCopyBytesPerSecond = (long)cloud.MinimumCopyMBps << 20,
            }, logs.CreateLogger("proxybackup"));
            return new EngineHost(client, catalog, repository, steps, logs, proxy.CurrentHistory?.ClusterId, servesCluster);
        }
        catch
        {
            // Not the logger factory: it is the caller's, and the daemon goes on logging (and retrying) with it.
            client.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A VM by ID or by name: unique among the VMs the user sees, else, when a repository is given,
    /// among the VMs its restore points were taken of (a VM deleted since keeps its restore points).
    /// </summary>
    public static async Task<int> ResolveVmAsync(OneClient client, string idOrName, CancellationToken ct, (BackupRepository Repository, VmSources Sources)? points = null) =>
        (await ResolveVmsAsync(client, [idOrName], ct, points).ConfigureAwait(false))[0];

    /// <summary>Several VMs as <see cref="ResolveVmAsync"/> finds one, each once (a VM named twice, by name and ID, is one job), with one read of the VM pool for all the names (a cloud's pool can hold thousands of VMs).</summary>
    public static async Task<List<int>> ResolveVmsAsync(OneClient client, IEnumerable<string> idsOrNames, CancellationToken ct, (BackupRepository Repository, VmSources Sources)? points = null)
    {
        IReadOnlyList<VirtualMachine>? pool = null;
        var ids = new List<int>();
        void AddOnce(int id) { if (!ids.Contains(id)) ids.Add(id); }
        foreach (var idOrName in idsOrNames)
        {
            if (int.TryParse(idOrName, out var id)) { AddOnce(id); continue; }
            pool ??= await client.VmPoolAsync(ct: ct).ConfigureAwait(false);
            var matches = pool.Where(v => v.Name == idOrName).Select(v => v.Id).ToList();
            if (matches.Count == 0 && points is var (repository, sources))
                matches = [.. BackedUpVms(repository, sources).Where(v => v.Names.Contains(idOrName)).Select(v => v.VmId)];
            AddOnce(matches.Count switch
            {
                1 => matches[0],
                0 => throw new CliException(points is null
                    ? $"No VM is named '{idOrName}'."
                    : $"No VM is named '{idOrName}', in OpenNebula or in the repository's restore points; 'proxybackup vm list' shows both."),
                _ => throw new CliException($"Several VMs are named '{idOrName}' ({string.Join(", ", matches)}); give the ID."),
            });
        }
        return ids;
    }

    /// <summary>The VMs the repository holds restore points of: ID, the names they had, the latest point.</summary>
    public static IEnumerable<(int VmId, IReadOnlySet<string> Names, RestorePoint Latest)> BackedUpVms(BackupRepository repository, VmSources sources) =>
        repository.ListRestorePoints()
            .Select(pt => (Point: pt, Vm: sources.TryVmId(pt.Source, out var vm) ? vm : -1))
            .Where(x => x.Vm >= 0)
            .GroupBy(x => x.Vm, x => x.Point)
            .Select(g => (g.Key, (IReadOnlySet<string>)g.Select(pt => pt.Tags.GetValueOrDefault("vm_name")).OfType<string>().ToHashSet(StringComparer.Ordinal), g.OrderBy(pt => pt.Time).Last()));

    public void Dispose()
    {
        _lease.Dispose();
        Client.Dispose();
        _ownedLogs?.Dispose();
    }
}
