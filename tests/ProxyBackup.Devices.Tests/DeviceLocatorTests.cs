using ProxyBackup.TestSupport;

namespace ProxyBackup.Devices.Tests;

/// <summary>Each way of finding an attached disk, on sysfs and /dev trees built by the test.</summary>
public sealed class DeviceLocatorTests : IDisposable
{
    private const long Gib = 1L << 30;
    private readonly TempDirectory _dir = new("pb-sysfs");
    private string Sys => _dir.Combine("sys");
    private string Dev => _dir.Combine("dev");

    private DeviceLocator Locator() => new(new DeviceLocatorOptions { SysfsRoot = Sys, DevRoot = Dev, PollInterval = TimeSpan.FromMilliseconds(10) });

    /// <summary>A disk as the kernel shows it: /sys/block/NAME/size in sectors, its SCSI address, its /dev node.</summary>
    private void AddDisk(string name, long bytes, string? hctl = null)
    {
        var block = Path.Combine(Sys, "block", name);
        Directory.CreateDirectory(block);
        File.WriteAllText(Path.Combine(block, "size"), (bytes / 512).ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n");
        if (hctl is not null) Directory.CreateDirectory(Path.Combine(block, "device", "scsi_device", hctl));
        Directory.CreateDirectory(Dev);
        File.WriteAllText(Path.Combine(Dev, name), "");
    }

    public DeviceLocatorTests()
    {
        AddDisk("vda", 20 * Gib);                       // the proxy's own disk
        AddDisk("sda", 8 * Gib, "2:0:0:0");             // an earlier attachment at SCSI target 0
        AddDisk("loop0", 10 * Gib);                     // never a candidate
    }

    [Theory]
    [InlineData("sda", 0)]
    [InlineData("sdc", 2)]
    [InlineData("sdz", 25)]
    [InlineData("sdaa", null)]
    [InlineData("vdb", null)]
    [InlineData(null, null)]
    public void Scsi_target_is_the_letter_index(string? target, int? expected) => Assert.Equal(expected, DeviceLocator.ScsiTargetIndex(target));

    [Fact]
    public async Task Finds_an_sd_disk_by_its_scsi_target_whatever_the_kernel_named_it()
    {
        var before = Locator().Snapshot();
        AddDisk("sdb", 10 * Gib, "2:0:3:0"); // TARGET sdd was asked for; the kernel called it sdb
        var found = await Locator().LocateAsync(new AttachedDisk(7, "sdd", null, 10 * Gib), before, TimeSpan.FromSeconds(2));
        Assert.Equal(Path.Combine(Dev, "sdb"), found);
    }

    [Fact]
    public async Task Refuses_a_scsi_match_of_the_wrong_size()
    {
        var before = Locator().Snapshot();
        AddDisk("sdb", 12 * Gib, "2:0:3:0");
        var e = await Assert.ThrowsAsync<DeviceNotFoundException>(() => Locator().LocateAsync(new AttachedDisk(7, "sdd", null, 10 * Gib), before, TimeSpan.FromMilliseconds(200)));
        Assert.Contains("refusing it", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Finds_a_disk_by_serial_on_7_0_2()
    {
        var before = Locator().Snapshot();
        AddDisk("vdb", 10 * Gib);
        Directory.CreateDirectory(Path.Combine(Dev, "disk", "by-id"));
        File.CreateSymbolicLink(Path.Combine(Dev, "disk", "by-id", "virtio-pb-118-abcdefghijklm"), Path.Combine(Dev, "vdb")); // truncated to 20
        File.CreateSymbolicLink(Path.Combine(Dev, "disk", "by-id", "virtio-pb-118-abcdefghijklm-part1"), Path.Combine(Dev, "vda"));
        var found = await Locator().LocateAsync(new AttachedDisk(118, "vdb", "pb-118-abcdefghijklmnopqrst", 10 * Gib), before, TimeSpan.FromSeconds(2));
        Assert.Equal(Path.Combine(Dev, "vdb"), found);
    }

    [Fact]
    public async Task An_sd_target_hot_plugged_as_virtio_blk_is_found_by_the_scan()
    {
        var before = Locator().Snapshot();
        AddDisk("vdb", 10 * Gib); // TARGET sdd was asked for; QEMU added a virtio-blk device
        var found = await Locator().LocateAsync(new AttachedDisk(7, "sdd", null, 10 * Gib), before, TimeSpan.FromSeconds(2));
        Assert.Equal(Path.Combine(Dev, "vdb"), found);
    }

    [Fact]
    public async Task Falls_back_to_the_one_new_device_of_the_right_size()
    {
        var before = Locator().Snapshot();
        AddDisk("vdb", 10 * Gib);
        var found = await Locator().LocateAsync(new AttachedDisk(9, "vdb", null, 10 * Gib), before, TimeSpan.FromSeconds(2));
        Assert.Equal(Path.Combine(Dev, "vdb"), found);
    }

    [Fact]
    public async Task Refuses_when_two_new_devices_have_the_size()
    {
        var before = Locator().Snapshot();
        AddDisk("vdb", 10 * Gib);
        AddDisk("vdc", 10 * Gib);
        var e = await Assert.ThrowsAsync<DeviceNotFoundException>(() => Locator().LocateAsync(new AttachedDisk(9, "vdb", null, 10 * Gib), before, TimeSpan.FromMilliseconds(200)));
        Assert.Contains("refusing to guess", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Waits_for_a_late_device_and_gives_up_with_advice()
    {
        var before = Locator().Snapshot();
        var late = Task.Run(async () => { await Task.Delay(150); AddDisk("vdb", 10 * Gib); });
        Assert.Equal(Path.Combine(Dev, "vdb"), await Locator().LocateAsync(new AttachedDisk(9, "vdb", null, 10 * Gib), before, TimeSpan.FromSeconds(5)));
        await late;
        var e = await Assert.ThrowsAsync<DeviceNotFoundException>(() => Locator().LocateAsync(new AttachedDisk(10, "vdc", null, 4 * Gib), Locator().Snapshot(), TimeSpan.FromMilliseconds(100)));
        Assert.Contains("did not show up", e.Message, StringComparison.Ordinal);
        Assert.Contains("/sys/bus/pci/rescan", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void The_proxys_own_and_loop_devices_are_never_candidates()
    {
        var snapshot = Locator().Snapshot();
        Assert.Contains("vda", snapshot.Devices.Keys);
        Assert.DoesNotContain("loop0", snapshot.Devices.Keys);
        Assert.Null(Locator().TryLocate(new AttachedDisk(1, "vdb", null, 20 * Gib), snapshot)); // vda has that size but was there before
    }

    public void Dispose() => _dir.Dispose();
}
