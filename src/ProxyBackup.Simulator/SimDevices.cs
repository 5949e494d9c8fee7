using System.Diagnostics;

namespace ProxyBackup.Simulator;

public enum SimDeviceMode { Auto, Loop, File }

/// <summary>
/// The proxy VM's view of its disks: a devices directory holding one entry per attached disk, named
/// in discovery order as a guest kernel would (sda, sdb, ... regardless of TARGET). With root and
/// loop devices an entry links to a real block device (/dev/loopN) backed by the disk's file;
/// otherwise it links to the file itself.
/// </summary>
public sealed class SimDevices : IProxyDiskBus
{
    public SimDevices(string directory, SimDeviceMode mode)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
        UsesLoopDevices = mode switch
        {
            SimDeviceMode.Loop => LoopDevicesWork() ? true : throw new InvalidOperationException("Loop devices were asked for, but this process cannot use them (needs root and /dev/loop-control)."),
            SimDeviceMode.File => false,
            _ => LoopDevicesWork(),
        };
    }

    public string Directory { get; }
    public bool UsesLoopDevices { get; }
    public string Description => $"{(UsesLoopDevices ? "loop devices" : "files")} in {Directory}";
    public bool ShowsOwnDisks => true;

    private static bool LoopDevicesWork() =>
        Environment.IsPrivilegedProcess && File.Exists("/dev/loop-control") && Run("losetup", "--find").ExitCode == 0;

    /// <summary>
    /// Where the disks of proxy VM <paramref name="proxyVmId"/> appear: a folder per proxy, as each
    /// proxy VM of a real cloud sees only its own disks (two appliances on one simulated cloud must
    /// not find each other's).
    /// </summary>
    public string DirectoryOf(int proxyVmId) => Path.Combine(Directory, $"vm-{proxyVmId.ToString(System.Globalization.CultureInfo.InvariantCulture)}");

    public SimDevice Expose(string backingFile, bool readOnly, int proxyVmId)
    {
        var folder = DirectoryOf(proxyVmId);
        System.IO.Directory.CreateDirectory(folder);
        var device = new SimDevice { Name = Path.Combine(Path.GetFileName(folder), FreeName(folder)), BackingFile = Path.GetFullPath(backingFile), ReadOnly = readOnly };
        Attach(device);
        return device;
    }

    /// <summary>After a restart of the simulator (or of this machine) the devices are set up again.</summary>
    public void Reattach(SimDevice device)
    {
        if (device.LoopDevice is not null && LoopBackingFile(device.LoopDevice) == device.BackingFile && File.Exists(Link(device)))
            return;
        device.LoopDevice = null;
        Attach(device);
    }

    /// <summary>At shutdown loop devices are released (they would outlive the process); the state keeps the attachment.</summary>
    public void Suspend(SimDevice device)
    {
        if (device.LoopDevice is not null) Run("losetup", "-d", device.LoopDevice);
    }

    private void Attach(SimDevice device)
    {
        string target = device.BackingFile;
        if (UsesLoopDevices)
        {
            var args = new List<string> { "--find", "--show" };
            if (device.ReadOnly) args.Add("--read-only");
            args.Add(device.BackingFile);
            var r = Run("losetup", [.. args]);
            if (r.ExitCode != 0) throw new IOException($"losetup failed: {r.Error.Trim()}");
            device.LoopDevice = r.Output.Trim();
            target = device.LoopDevice;
        }
        var link = Link(device);
        if (File.Exists(link) || new FileInfo(link).LinkTarget is not null) File.Delete(link);
        File.CreateSymbolicLink(link, target);
    }

    public string? TryRelease(SimDevice device)
    {
        // Short: OpenNebula cuts USER_TEMPLATE/ERROR at 100 characters, and who holds it is the useful part.
        if (Holder(device) is { } holder) return $"device in use in the guest ({holder})";
        Remove(device);
        return null;
    }

    public void Remove(SimDevice device)
    {
        var link = Link(device);
        if (new FileInfo(link).LinkTarget is not null || File.Exists(link)) File.Delete(link);
        if (device.LoopDevice is not null)
        {
            Run("losetup", "-d", device.LoopDevice);
            device.LoopDevice = null;
        }
    }

    /// <summary>The process on this machine that holds the device (or its file) open, a guest that has not let go; null if none.</summary>
    private static string? Holder(SimDevice device)
    {
        var targets = new HashSet<string>(StringComparer.Ordinal) { device.BackingFile };
        if (device.LoopDevice is not null) targets.Add(device.LoopDevice);
        foreach (var proc in System.IO.Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(proc), out _)) continue;
            IEnumerable<string> fds;
            try { fds = System.IO.Directory.EnumerateFiles(Path.Combine(proc, "fd")).ToList(); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { continue; }
            foreach (var fd in fds)
            {
                try
                {
                    if (new FileInfo(fd).LinkTarget is { } t && targets.Contains(t)) return $"pid {Path.GetFileName(proc)} {Command(proc)}";
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
            }
        }
        return null;
    }

    private static string Command(string proc)
    {
        try { return File.ReadAllText(Path.Combine(proc, "comm")).Trim(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return "gone"; }
    }

    private string Link(SimDevice device) => Path.Combine(Directory, device.Name);

    private static string FreeName(string folder)
    {
        for (var i = 0; ; i++)
        {
            var letters = i < 26 ? ((char)('a' + i)).ToString() : $"{(char)('a' + i / 26 - 1)}{(char)('a' + i % 26)}";
            var name = "sd" + letters;
            var path = Path.Combine(folder, name);
            if (!File.Exists(path) && new FileInfo(path).LinkTarget is null) return name;
        }
    }

    private static string? LoopBackingFile(string loop)
    {
        var r = Run("losetup", "--noheadings", "--output", "BACK-FILE", loop);
        return r.ExitCode == 0 ? r.Output.Trim() : null;
    }

    private static (int ExitCode, string Output, string Error) Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        try
        {
            using var p = Process.Start(psi)!;
            var output = p.StandardOutput.ReadToEnd();
            var error = p.StandardError.ReadToEnd();
            p.WaitForExit();
            return (p.ExitCode, output, error);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return (127, "", e.Message);
        }
    }
}
