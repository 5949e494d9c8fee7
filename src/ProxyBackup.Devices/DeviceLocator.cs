using ProxyBackup.Contracts;
using System.Globalization;

namespace ProxyBackup.Devices;

/// <summary>What the appliance knows of a disk it just attached to itself (from one.vm.info of the proxy).</summary>
public sealed record AttachedDisk(int ImageId, string? Target, string? Serial, long SizeBytes);

/// <summary>The block devices present at one moment: name → size in bytes.</summary>
public sealed record DeviceSnapshot(IReadOnlyDictionary<string, long> Devices);

/// <summary>
/// Finds, inside the proxy VM, the block device of a disk OpenNebula just attached (docs/opennebula.md, "Device discovery").
/// Guest names (sdb, vdc) follow discovery order and need not match TARGET, so the disk is found by
/// what is deterministic: the SCSI target number of an sd TARGET, the disk serial on 7.0.2+, or as
/// the only new device of the right size. Every answer is checked against the size; an ambiguous
/// or missing answer is refused rather than guessed, because a wrong device would be read, or worse
/// written, instead of the right one.
/// </summary>
public sealed class DeviceLocator(DeviceLocatorOptions options)
{
    public DeviceLocatorOptions Options => options;

    /// <summary>The devices present now. Take it before the attach when the scan strategy may be needed.</summary>
    public DeviceSnapshot Snapshot()
    {
        var devices = new Dictionary<string, long>(StringComparer.Ordinal);
        if (options.DevicesDirectory is { } dir)
        {
            if (Directory.Exists(dir))
                foreach (var entry in Directory.EnumerateFileSystemEntries(dir))
                    devices[Path.GetFileName(entry)] = SizeOfEntry(entry);
            return new DeviceSnapshot(devices);
        }
        var block = Path.Combine(options.SysfsRoot, "block");
        if (Directory.Exists(block))
            foreach (var d in Directory.EnumerateFileSystemEntries(block))
            {
                var name = Path.GetFileName(d);
                if (name.StartsWith("loop", StringComparison.Ordinal) || name.StartsWith("ram", StringComparison.Ordinal) || name.StartsWith("sr", StringComparison.Ordinal)) continue;
                devices[name] = SysfsSize(name) ?? 0;
            }
        return new DeviceSnapshot(devices);
    }

    /// <summary>Polls until exactly one device matches (bounded by the timeout); returns its path.</summary>
    public async Task<string> LocateAsync(AttachedDisk disk, DeviceSnapshot before, TimeSpan timeout, CancellationToken ct = default)
    {
        var deadline = DateTime.UtcNow + timeout;
        string? lastProblem = null;
        while (true)
        {
            try
            {
                var found = TryLocate(disk, before);
                if (found is not null) return found;
                lastProblem = "no device has appeared yet";
            }
            catch (DeviceNotFoundException e) when (DateTime.UtcNow < deadline)
            {
                lastProblem = e.Message;
            }
            if (DateTime.UtcNow >= deadline)
                throw new DeviceNotFoundException($"The disk of image {disk.ImageId} (target {disk.Target ?? "?"}, {disk.SizeBytes} bytes) did not show up as a block device within {timeout.TotalSeconds:0} s: {lastProblem}. Check that hot-plug works on the proxy VM (a rescan: echo 1 > /sys/bus/pci/rescan).");
            await Task.Delay(options.PollInterval, ct).ConfigureAwait(false);
        }
    }

    /// <summary>One attempt: null when nothing is there yet; throws when the answer is wrong or ambiguous.</summary>
    internal string? TryLocate(AttachedDisk disk, DeviceSnapshot before)
    {
        if (options.DevicesDirectory is null)
        {
            if (disk.Serial is { Length: > 0 } serial && BySerial(serial) is { } s) return Checked(s.Name, s.Path, disk);
            // A hypervisor that hot-plugs every disk as virtio-blk (TARGET's bus not honoured) shows
            // no SCSI disk at that target: the scan, still size-checked and unique, finds the vdX.
            if (ScsiTargetIndex(disk.Target) is { } target && ByScsiTarget(target, disk) is { } byTarget) return byTarget;
        }
        return ByScan(disk, before);
    }

    /// <summary>sda → 0, sdb → 1 ...: OpenNebula pins an sd disk at SCSI target = letter index (one letter only).</summary>
    public static int? ScsiTargetIndex(string? target) =>
        target is { Length: 3 } && target.StartsWith("sd", StringComparison.Ordinal) && target[2] is >= 'a' and <= 'z' ? target[2] - 'a' : null;

    private string? ByScsiTarget(int target, AttachedDisk disk)
    {
        var block = Path.Combine(options.SysfsRoot, "block");
        if (!Directory.Exists(block)) return null;
        var matches = new List<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(block, "sd*"))
        {
            var name = Path.GetFileName(entry);
            var scsi = Path.Combine(entry, "device", "scsi_device");
            if (!Directory.Exists(scsi)) continue;
            foreach (var hctl in Directory.EnumerateFileSystemEntries(scsi).Select(Path.GetFileName).OfType<string>())
            {
                var parts = hctl.Split(':');
                if (parts.Length == 4 && int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var t) && t == target && IsOnHotplugController(parts))
                    matches.Add(name);
            }
        }
        return matches.Count switch
        {
            0 => null,
            1 => Checked(matches[0], Path.Combine(options.DevRoot, matches[0]), disk),
            _ => throw new DeviceNotFoundException($"Several SCSI disks sit at target {target} ({string.Join(", ", matches)}): refusing to guess."),
        };
    }

    /// <summary>OpenNebula's virtio-scsi controller is the only SCSI host of a KVM proxy; channel and LUN are 0.</summary>
    private static bool IsOnHotplugController(string[] hctl) => hctl[1] == "0" && hctl[3] == "0";

    private (string Name, string Path)? BySerial(string serial)
    {
        var byId = Path.Combine(options.DevRoot, "disk", "by-id");
        if (!Directory.Exists(byId)) return null;
        // The kernel keeps the first 20 bytes of a virtio serial; SCSI links carry it whole.
        var shortSerial = serial.Length > 20 ? serial[..20] : serial;
        foreach (var link in Directory.EnumerateFileSystemEntries(byId))
        {
            var name = Path.GetFileName(link);
            if (name.Contains("-part", StringComparison.Ordinal)) continue;
            if (name == $"virtio-{shortSerial}" || (name.StartsWith("scsi-", StringComparison.Ordinal) && name.EndsWith(serial, StringComparison.Ordinal)))
            {
                var resolved = new FileInfo(link).ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? link;
                return (Path.GetFileName(resolved), resolved);
            }
        }
        return null;
    }

    private string? ByScan(AttachedDisk disk, DeviceSnapshot before)
    {
        var now = Snapshot();
        var fresh = now.Devices.Where(d => !before.Devices.ContainsKey(d.Key)).ToList();
        var sized = fresh.Where(d => d.Value == disk.SizeBytes).ToList();
        if (sized.Count > 1)
            throw new DeviceNotFoundException($"Several new devices have the disk's size of {disk.SizeBytes} bytes ({string.Join(", ", sized.Select(d => d.Key))}): refusing to guess. Attach one disk at a time.");
        if (sized.Count == 1)
            return options.DevicesDirectory is { } dir ? Path.Combine(dir, sized[0].Key) : Path.Combine(options.DevRoot, sized[0].Key);
        if (fresh.Count > 0 && fresh.All(d => d.Value > 0))
            throw new DeviceNotFoundException($"New device(s) {string.Join(", ", fresh.Select(d => $"{d.Key} ({d.Value} bytes)"))} do not have the disk's size of {disk.SizeBytes} bytes.");
        return null;
    }

    private string Checked(string name, string path, AttachedDisk disk)
    {
        var size = options.DevicesDirectory is null ? SysfsSize(name) : SizeOfEntry(path);
        if (size != disk.SizeBytes)
            throw new DeviceNotFoundException($"Device {name} has {size?.ToString(CultureInfo.InvariantCulture) ?? "an unknown number of"} bytes, the attached disk {disk.SizeBytes}: refusing it.");
        return path;
    }

    private long? SysfsSize(string name)
    {
        var file = Path.Combine(options.SysfsRoot, "block", name, "size");
        return File.Exists(file) && long.TryParse(File.ReadAllText(file).Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var sectors) ? sectors * 512 : null;
    }

    /// <summary>Size of an entry of a devices directory: a loop device (via sysfs) or a plain file.</summary>
    private long SizeOfEntry(string entry)
    {
        var info = new FileInfo(entry);
        var target = info.LinkTarget is null ? info : info.ResolveLinkTarget(returnFinalTarget: true) as FileInfo ?? info;
        if (target.FullName.StartsWith("/dev/", StringComparison.Ordinal))
            return SysfsSize(Path.GetFileName(target.FullName)) ?? 0;
        return target.Exists ? target.Length : 0;
    }
}

public sealed record DeviceLocatorOptions
{
    /// <summary>Where sysfs is mounted; tests point it at a tree they build.</summary>
    public string SysfsRoot { get; init; } = "/sys";

    /// <summary>Where device nodes are (and disk/by-id).</summary>
    public string DevRoot { get; init; } = "/dev";

    /// <summary>The simulator's world: a directory whose entries are the proxy's disks (links to loop devices or files). Only the scan applies there.</summary>
    public string? DevicesDirectory { get; init; }

    public TimeSpan PollInterval { get; init; } = TimeSpan.FromMilliseconds(50);
}

public sealed class DeviceNotFoundException(string message) : UserFacingException(message);
