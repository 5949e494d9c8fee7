namespace ProxyBackup.Cli.Tests;

/// <summary>The programs these tests drive, as built beside them (used as <c>dotnet ProxybackupDll ...</c>).</summary>
public static class ApplianceBinaries
{
    public static string ProxybackupDll => Path.Combine(AppContext.BaseDirectory, "proxybackup.dll");
    public static string DemoDll => Path.Combine(AppContext.BaseDirectory, "proxybackup-demo.dll");
}
