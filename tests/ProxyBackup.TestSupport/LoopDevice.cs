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

    /// <summary>A system tool's output; its failure (non-zero exit) as an exception naming the command.</summary>
    public static string Run(string file, params string[] args)
    {
        var (code, output, error) = ChildProcess.Run(file, args);
        return code == 0 ? output : throw new InvalidOperationException($"{file} {string.Join(' ', args)}: exit {code}: {error}");
    }

    public void Dispose()
    {
        var device = new FileInfo(Path).Name;
        foreach (var line in System.IO.File.ReadAllLines("/proc/self/mountinfo").Where(l => l.Contains($" /dev/{device} ", StringComparison.Ordinal)))
            try { Run("umount", "-l", line.Split(' ')[4]); } catch (InvalidOperationException) { }
        try { Run("losetup", "-d", Path); } catch (InvalidOperationException) { }
    }
}
