using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging.Abstractions;
using ProxyBackup.Catalog;
using ProxyBackup.Devices;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Simulator;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>A simulated cloud, a repository, a catalog and the engine wired to them, as the appliance wires them.</summary>
public sealed class EngineWorld : IAsyncDisposable
{
    private readonly TempDirectory _dir = new("pb-engine");

    private EngineWorld() { }

    public SimServer Sim { get; private set; } = null!;
    public OneClient Client { get; private set; } = null!;
    public BackupRepository Repository { get; private set; } = null!;
    public SqlCatalog Catalog { get; private set; } = null!;
    public CloudSteps Steps { get; private set; } = null!;
    public CloudCleaner Cleaner { get; private set; } = null!;
    public BackupJob Backup { get; private set; } = null!;
    public RestoreJob Restore { get; private set; } = null!;
    public int ProxyId { get; private set; }
    public string Root => _dir.Path;

    /// <param name="devices">How the simulated proxy shows attached disks: loop devices where this machine allows (Auto), or plain files, as on a machine without them.</param>
    public static async Task<EngineWorld> StartAsync(long diskMb = 4, Func<EngineOptions, EngineOptions>? configure = null, SimDeviceMode devices = SimDeviceMode.Auto)
    {
        var w = new EngineWorld();
        w.Sim = SimServer.Start(new SimOptions { DataDirectory = w._dir.Combine("cloud"), OperationTime = TimeSpan.FromMilliseconds(20), DeviceMode = devices }, IPAddress.Loopback, 0, "pw");
        w.Sim.Cloud.SeedDemo(diskMb);
        await w.Sim.Cloud.WaitIdleAsync(TimeSpan.FromSeconds(30));
        w.Client = w.ClientOf("oneadmin", "pw");
        w.ProxyId = (await w.Client.VmPoolAsync()).Single(v => v.Name == "proxybackup").Id;
        w.Repository = BackupRepository.Create(w._dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 256 << 10 });
        w.Catalog = new SqlCatalog(w._dir.Combine("catalog.db"));
        w.Rewire(configure);
        return w;
    }

    public OneClient ClientOf(string user, string password) =>
        new(new OneClientOptions { Endpoint = Sim.Endpoint, Credentials = new OneCredentials(user, password), Retries = 2, RetryDelay = TimeSpan.FromMilliseconds(20), MaxPollsPerSecond = 1000 });

    /// <summary>From now on the engine acts as another OpenNebula account (made in the users group when new), as an appliance configured with it.</summary>
    public void ActAs(string user, string password)
    {
        Sim.Cloud.SetPassword(user, password);
        Client = ClientOf(user, password);
        Rewire(null);
    }

    /// <summary>
    /// Builds the engine anew over the same cloud, repository and catalog, with the test's options
    /// over these defaults (as an appliance restarted with another configuration).
    /// </summary>
    public void Rewire(Func<EngineOptions, EngineOptions>? configure)
    {
        var options = new EngineOptions
        {
            ProxyVmId = ProxyId, FirstPoll = TimeSpan.FromMilliseconds(10), MaxPoll = TimeSpan.FromMilliseconds(100),
            OperationTimeout = TimeSpan.FromSeconds(20), CopyTimeout = TimeSpan.FromSeconds(30), DeviceTimeout = TimeSpan.FromSeconds(10), DetachAttempts = 3, DetachRetryDelay = TimeSpan.FromMilliseconds(200),
        };
        options = configure?.Invoke(options) ?? options;
        var locator = new DeviceLocator(new DeviceLocatorOptions { DevicesDirectory = Sim.Cloud.Devices.DirectoryOf(ProxyId), PollInterval = TimeSpan.FromMilliseconds(20) });
        Steps = new CloudSteps(Client, Catalog, locator, options, NullLogger.Instance);
        Cleaner = new CloudCleaner(Steps, Catalog, NullLogger.Instance);
        Backup = new BackupJob(Steps, Cleaner, Catalog, Catalog, Repository, NullLogger.Instance, Catalog);
        Restore = new RestoreJob(Steps, Cleaner, Catalog, Repository, NullLogger.Instance, Catalog);
    }

    public async Task<VirtualMachine> VmAsync(string name) =>
        await Client.VmInfoAsync((await Client.VmPoolAsync()).Single(v => v.Name == name).Id);

    public string DiskSha256(int vmId, int diskId)
    {
        using var f = new FileStream(Sim.Cloud.DiskContentPath(vmId, diskId), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    public string ImageSha256(int imageId)
    {
        using var f = new FileStream(Sim.Cloud.ImageContentPath(imageId), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    /// <summary>What a job may leave behind: snapshots, images, proxy disks and devices, templates, busy VMs.</summary>
    public Dictionary<string, object?> Inventory() => Sim.Cloud.Inventory();

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Sim.DisposeAsync();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }
}
