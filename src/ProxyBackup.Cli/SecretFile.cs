namespace ProxyBackup.Cli;

/// <summary>Files that hold a secret (credentials, passphrases, keys) are read only when nobody else can read them.</summary>
internal static class SecretFile
{
    private const UnixFileMode Others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.OtherRead | UnixFileMode.OtherWrite;

    /// <summary>Refuses, with the chmod to run, a file readable or writable by group or others.</summary>
    public static void CheckPrivate(string path)
    {
        if ((File.GetUnixFileMode(path) & Others) != 0)
            throw new CliException($"{path} is readable by others: it holds secrets. Fix it with: chmod 600 {path}");
    }

    public static string ReadAllText(string path)
    {
        CheckPrivate(path);
        return File.ReadAllText(path);
    }
}
