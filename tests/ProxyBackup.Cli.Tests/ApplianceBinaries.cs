namespace ProxyBackup.Cli.Tests;

/// <summary>The programs these tests drive, as built beside them (used as <c>dotnet ProxybackupDll ...</c>).</summary>
public static class ApplianceBinaries
{
    public static string ProxybackupDll => Path.Combine(AppContext.BaseDirectory, "proxybackup.dll");
    public static string DemoDll => Path.Combine(AppContext.BaseDirectory, "proxybackup-demo.dll");

    /// <summary>Connection, proxy, catalog, devices and repository options for the CLI against a test world (writes its credentials file, mode 0600).</summary>
    public static async Task<string[]> WorldArgsAsync(EngineWorld w)
    {
        var auth = Path.Combine(w.Root, "one_auth");
        await File.WriteAllTextAsync(auth, "oneadmin:pw");
        File.SetUnixFileMode(auth, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return ["--endpoint", w.Sim.Endpoint.ToString(), "--auth-file", auth, "--proxy-vm", w.ProxyId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--catalog", w.Catalog.Path, "--devices-dir", w.Sim.Cloud.Devices.DirectoryOf(w.ProxyId), "--repo", w.Repository.Root];
    }

    /// <summary>Runs the CLI to its end: exit code, standard output and standard error.</summary>
    public static Task<(int Code, string Output, string Error)> ProxybackupAsync(params string[] args) =>
        ProxyBackup.TestSupport.ChildProcess.RunAsync("dotnet", [ProxybackupDll, .. args]);

    /// <summary>Runs the CLI to its end with these variables in its environment.</summary>
    public static Task<(int Code, string Output, string Error)> ProxybackupAsync(IReadOnlyDictionary<string, string> environment, params string[] args) =>
        ProxyBackup.TestSupport.ChildProcess.RunAsync(environment, "dotnet", [ProxybackupDll, .. args]);
}
