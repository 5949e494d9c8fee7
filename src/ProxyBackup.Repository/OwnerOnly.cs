namespace ProxyBackup.Repository;

/// <summary>
/// Modes of everything the repository writes, and of restored and exported images: readable by the
/// appliance's user only. Backups hold whole disks, so a world-readable file would hand them to
/// any account on the proxy VM (docs/repository-format.md, "Layout").
/// </summary>
public static class OwnerOnly
{
    public const UnixFileMode File = UnixFileMode.UserRead | UnixFileMode.UserWrite;
    public const UnixFileMode Directory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Creates the directory and any missing parent with <see cref="Directory"/> (the runtime gives parents the default mode).</summary>
    public static void CreateDirectory(string path)
    {
        var full = Path.GetFullPath(path);
        if (System.IO.Directory.Exists(full)) return;
        if (Path.GetDirectoryName(full) is { } parent) CreateDirectory(parent);
        System.IO.Directory.CreateDirectory(full, Directory);
    }
}
