namespace ProxyBackup.Repository;

/// <summary>
/// The kernel's table of mounts (/proc/self/mountinfo, proc(5)): which file system is mounted where.
/// A repository on its own disk or NFS share checks it before every operation
/// (docs/operations.md, "Repository storage").
/// </summary>
public static class MountTable
{
    /// <summary>One mount: where, what kind of file system, from which device or export, and the device number.</summary>
    public sealed record Mount(string MountPoint, string FileSystem, string Source, string Device);

    public static IReadOnlyList<Mount> Read(string mountInfo = "/proc/self/mountinfo")
    {
        var mounts = new List<Mount>();
        foreach (var line in File.ReadLines(mountInfo))
        {
            // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
            var fields = line.Split(' ');
            if (fields.Length < 10) continue;
            var separator = Array.IndexOf(fields, "-", 6);
            if (separator < 0 || separator + 2 >= fields.Length) continue;
            mounts.Add(new Mount(Unescape(fields[4]), fields[separator + 1], Unescape(fields[separator + 2]), fields[2]));
        }
        return mounts;
    }

    /// <summary>The mount at exactly <paramref name="directory"/>, the last one when several are stacked; null when none.</summary>
    public static Mount? At(string directory, string mountInfo = "/proc/self/mountinfo")
    {
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(directory));
        return Read(mountInfo).LastOrDefault(m => m.MountPoint == full);
    }

    /// <summary>The mount points at or below <paramref name="directory"/>.</summary>
    public static IReadOnlyList<string> Under(string directory, string mountInfo = "/proc/self/mountinfo") =>
        [.. Read(mountInfo).Select(m => m.MountPoint).Where(m => Contains(directory, m)).Distinct()];

    /// <summary>Whether <paramref name="path"/> is <paramref name="mountPoint"/> or lies below it.</summary>
    public static bool Contains(string mountPoint, string path)
    {
        var root = Path.TrimEndingDirectorySeparator(Path.GetFullPath(mountPoint));
        var full = Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));
        return full == root || full.StartsWith(root == "/" ? root : root + "/", StringComparison.Ordinal);
    }

    /// <summary>The kernel writes space, tab, newline and backslash in paths as octal escapes (\040).</summary>
    private static string Unescape(string field)
    {
        if (!field.Contains('\\', StringComparison.Ordinal)) return field;
        var text = new System.Text.StringBuilder(field.Length);
        for (var i = 0; i < field.Length; i++)
        {
            if (field[i] == '\\' && IsOctal(field, i + 1))
            {
                text.Append((char)Convert.ToInt32(field.Substring(i + 1, 3), 8));
                i += 3;
            }
            else text.Append(field[i]);
        }
        return text.ToString();
    }

    private static bool IsOctal(string s, int at) =>
        at + 3 <= s.Length && s[at] is >= '0' and <= '7' && s[at + 1] is >= '0' and <= '7' && s[at + 2] is >= '0' and <= '7';
}
