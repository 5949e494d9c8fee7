using System.Diagnostics;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A sparse file behind a loop device (losetup), as a disk the tests may format and mount; at dispose
/// whatever is mounted from it is unmounted and the device released.
/// </summary>
public sealed class LoopDevice : IDisposable
{
    public LoopDevice(string file, long size)
    {
        using (var f = System.IO.File.Create(file)) f.SetLength(size);
        Path = Run("losetup", "-f", "--show", file).Trim();
    }

    /// <summary>/dev/loopN.</summary>
    public string Path { get; }

    public static string Run(string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var error = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? output : throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {p.ExitCode}: {error.Result}");
    }

    public void Dispose()
    {
        var device = new FileInfo(Path).Name;
        foreach (var line in System.IO.File.ReadAllLines("/proc/self/mountinfo").Where(l => l.Contains($" /dev/{device} ", StringComparison.Ordinal)))
            try { Run("umount", "-l", line.Split(' ')[4]); } catch (InvalidOperationException) { }
        try { Run("losetup", "-d", Path); } catch (InvalidOperationException) { }
    }
}
