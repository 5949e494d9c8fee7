using System.Net;
using System.Security.Cryptography;
using ProxyBackup.OpenNebula;
using ProxyBackup.Simulator;
using ProxyBackup.TestSupport;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>A seeded simulator on a free loopback port, a client logged in to it, and quick polling.</summary>
public sealed class SimulatedCloud : IAsyncDisposable
{
    public const string Password = "s3cret-pw";
    private readonly TempDirectory _dir;

    private SimulatedCloud(TempDirectory dir, SimServer server, OneClient client)
    {
        _dir = dir;
        Server = server;
        Client = client;
        Waiter = new OneWaiter(client, TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(100));
    }

    public SimServer Server { get; private set; }
    public OneClient Client { get; private set; }
    public OneWaiter Waiter { get; private set; }
    public string DataDirectory => _dir.Path;
    /// <summary>The seeded proxy VM ("proxybackup"), whose attached disks appear in <see cref="DevicesDirectory"/>.</summary>
    public int ProxyId { get; private set; }
    public string DevicesDirectory => Server.Cloud.Devices.DirectoryOf(ProxyId);
    public static TimeSpan Timeout => TimeSpan.FromSeconds(30);

    public static async Task<SimulatedCloud> StartAsync(int opMs = 30, long diskMb = 4, TempDirectory? reuse = null, Func<SimOptions, SimOptions>? configure = null)
    {
        var dir = reuse ?? new TempDirectory("pb-sim");
        var options = new SimOptions { DataDirectory = dir.Path, OperationTime = TimeSpan.FromMilliseconds(opMs) };
        var server = SimServer.Start(configure?.Invoke(options) ?? options, IPAddress.Loopback, 0, Password);
        server.Cloud.SeedDemo(diskMb);
        await server.Cloud.WaitIdleAsync(TimeSpan.FromSeconds(30));
        var cloud = new SimulatedCloud(dir, server, NewClient(server.Endpoint, Password));
        cloud.ProxyId = (await cloud.Client.VmPoolAsync()).Single(v => v.Name == "proxybackup").Id;
        return cloud;
    }

    public static OneClient NewClient(Uri endpoint, string password, int retries = 2) => new(new OneClientOptions
    {
        Endpoint = endpoint,
        Credentials = new OneCredentials("oneadmin", password),
        CallTimeout = TimeSpan.FromSeconds(10),
        Retries = retries,
        RetryDelay = TimeSpan.FromMilliseconds(20),
    });

    /// <summary>Stops the simulator and starts it again on the same data directory (and a new port).</summary>
    public async Task RestartAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        Server = SimServer.Start(new SimOptions { DataDirectory = _dir.Path, OperationTime = TimeSpan.FromMilliseconds(30) }, IPAddress.Loopback, 0, Password);
        Client = NewClient(Server.Endpoint, Password);
        Waiter = new OneWaiter(Client, TimeSpan.FromMilliseconds(10), TimeSpan.FromMilliseconds(100));
    }

    public async Task<VirtualMachine> VmNamedAsync(string name) =>
        (await Client.VmPoolAsync()).Single(v => v.Name == name) is var shortVm ? await Client.VmInfoAsync(shortVm.Id) : throw new InvalidOperationException();

    public async Task<VirtualMachine> ProxyAsync() => await VmNamedAsync("proxybackup");

    /// <summary>
    /// Detaches a disk from the proxy as the engine does: udev probes a block device after it was
    /// written (blkid), and a detach during that probe is refused as "device in use in the guest";
    /// it is asked again, a bounded number of times, until the disk is gone.
    /// </summary>
    public async Task<VirtualMachine> DetachFromProxyAsync(int proxyId, int diskId)
    {
        for (var attempt = 1; ; attempt++)
        {
            await Client.VmDetachAsync(proxyId, diskId);
            var vm = await Waiter.VmSettledAsync(proxyId, Timeout);
            if (vm.Disks.All(d => d.DiskId != diskId)) return vm;
            if (attempt == 10 || vm.LastError?.Contains("device in use", StringComparison.Ordinal) != true)
                throw new InvalidOperationException($"Disk {diskId} is still attached to the proxy: {vm.LastError}");
            await Task.Delay(200 * attempt);
        }
    }

    public IReadOnlySet<string> DeviceNames() =>
        Directory.EnumerateFileSystemEntries(DevicesDirectory).Select(Path.GetFileName).OfType<string>().ToHashSet();

    public static string Sha256OfFile(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexString(SHA256.HashData(f));
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
        _dir.Dispose();
    }
}
