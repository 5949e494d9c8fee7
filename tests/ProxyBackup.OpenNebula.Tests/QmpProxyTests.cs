using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyBackup.Simulator;
using ProxyBackup.TestSupport;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>
/// The simulator's proxy VM as a real QEMU process (no guest OS: the BIOS idles): an attach
/// hot-plugs a virtio-blk device backed by the image's file; a detach the guest does not
/// acknowledge fails as virsh detach-disk does. The whole road with a guest that answers is
/// packaging/boot-test --job.
/// </summary>
public sealed class QmpProxyTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("pb-qmp");
    private Process? _qemu;
    private string Socket => _dir.Combine("qmp.sock");

    public async Task InitializeAsync()
    {
        if (QemuFactAttribute.Qemu is null) return;
        _qemu = Process.Start(new ProcessStartInfo(QemuFactAttribute.Qemu)
        {
            ArgumentList = { "-machine", "pc,accel=tcg", "-nodefaults", "-display", "none", "-m", "64", "-qmp", $"unix:{Socket},server,nowait" },
            RedirectStandardError = true,
        })!;
        for (var i = 0; i < 100 && !File.Exists(Socket); i++) await Task.Delay(100);
    }

    [QemuFact]
    public async Task Attach_hot_plugs_a_virtio_blk_device_and_an_unacknowledged_unplug_fails_the_detach()
    {
        await using var cloud = await SimulatedCloud.StartAsync(configure: o => o with { ProxyQmpSocket = Socket, UnplugTimeout = TimeSpan.FromSeconds(1) });
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        Assert.Empty(Devices()); // the proxy's own disk is QEMU's, not the simulator's to show
        var imageId = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-qmp").Set("TYPE", "DATABLOCK").Set("SIZE", 2), 1);
        await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);

        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", imageId), new("TARGET", "sdb"), new("READONLY", "YES")]));
        var attached = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        var disk = attached.Disks.Single(d => d.ImageId == imageId);
        var (driver, file, readOnly) = Assert.Single(Devices());
        Assert.Equal("virtio-blk-pci", driver);
        Assert.StartsWith(cloud.DataDirectory, file, StringComparison.Ordinal);
        Assert.Equal(2L << 20, new FileInfo(file).Length);
        Assert.True(readOnly);

        await c.VmDetachAsync(proxy.Id, disk.DiskId);
        var still = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        Assert.Contains(still.Disks, d => d.ImageId == imageId);
        Assert.Contains("device in use in the guest (no unplug", still.LastError, StringComparison.Ordinal);
        Assert.Single(Devices());
    }

    [Fact]
    public async Task An_attach_fails_cleanly_when_the_proxys_QEMU_is_not_there()
    {
        await using var cloud = await SimulatedCloud.StartAsync(configure: o => o with { ProxyQmpSocket = _dir.Combine("no-qemu.sock") });
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var imageId = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-qmp-gone").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1);
        await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);

        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", imageId), new("TARGET", "sdb")]));
        var after = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        Assert.Equal(LcmState.Running, after.LcmState);
        Assert.DoesNotContain(after.Disks, d => d.ImageId == imageId);
        Assert.Contains("Cannot reach QEMU", after.LastError, StringComparison.Ordinal);
        Assert.Equal(ImageState.Ready, (await c.ImageInfoAsync(imageId)).State);
    }

    /// <summary>The virtio-blk devices QEMU has, with the file behind each and whether it is read-only (asked over QMP).</summary>
    private List<(string Driver, string File, bool ReadOnly)> Devices()
    {
        using var qmp = QmpConnection.Open(Socket);
        JsonNode Call(string command, JsonObject? arguments = null) => qmp.Execute(command, arguments)!;
        var blocks = Call("query-block").AsArray().Where(b => b?["inserted"] is not null).ToList();
        var result = new List<(string, string, bool)>();
        foreach (var p in Call("qom-list", new JsonObject { ["path"] = "/machine/peripheral" }).AsArray())
        {
            var id = p!["name"]!.GetValue<string>();
            if (!p["type"]!.GetValue<string>().StartsWith("child<", StringComparison.Ordinal)) continue;
            var driver = Call("qom-get", new JsonObject { ["path"] = $"/machine/peripheral/{id}", ["property"] = "type" }).GetValue<string>();
            var block = blocks.Single(b => b!["qdev"]!.GetValue<string>().Contains(id, StringComparison.Ordinal))!;
            result.Add((driver, block["inserted"]!["file"]!.GetValue<string>(), block["inserted"]!["ro"]!.GetValue<bool>()));
        }
        return result;
    }

    public Task DisposeAsync()
    {
        if (_qemu is { HasExited: false }) _qemu.Kill();
        _qemu?.WaitForExit();
        _qemu?.Dispose();
        _dir.Dispose();
        return Task.CompletedTask;
    }
}

/// <summary>Needs qemu-system-x86_64 (Debian qemu-system-x86); skipped, with the reason, without it.</summary>
public sealed class QemuFactAttribute : FactAttribute
{
    public static string? Qemu { get; } = new[] { "/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64" }.FirstOrDefault(File.Exists);

    public QemuFactAttribute()
    {
        if (Qemu is null) Skip = "needs qemu-system-x86_64 (apt-get install qemu-system-x86)";
    }
}
