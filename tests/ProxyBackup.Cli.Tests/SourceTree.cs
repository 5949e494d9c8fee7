namespace ProxyBackup.Cli.Tests;

/// <summary>The checkout the tests were built from (the directory holding ProxyBackup.sln).</summary>
internal static class SourceTree
{
    public static string Root { get; } = Find();

    private static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ProxyBackup.sln"))) return dir.FullName;
        throw new InvalidOperationException($"No ProxyBackup.sln above {AppContext.BaseDirectory}.");
    }
}
