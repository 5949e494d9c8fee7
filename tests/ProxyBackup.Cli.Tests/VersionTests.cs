using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>One version everywhere: the VERSION file is what the binary, the packages and the marketplace entry say.</summary>
public class VersionTests
{
    private static string Version => File.ReadAllText(Path.Combine(SourceTree.Root, "VERSION")).Trim();

    [Fact]
    public async Task The_binary_reports_the_version_file()
    {
        var (code, output, _) = await ChildProcess.RunAsync("dotnet", ApplianceBinaries.ProxybackupDll, "--version");
        Assert.Equal(0, code);
        Assert.Matches($@"^{System.Text.RegularExpressions.Regex.Escape(Version)}(\+[0-9a-f]+)?$", output.Trim());
    }

    [Fact]
    public void The_marketplace_entry_carries_the_version_file()
    {
        var entry = File.ReadAllLines(Path.Combine(SourceTree.Root, "packaging", "opennebula", "marketplace.yaml"));
        Assert.Contains($"version: {Version}", entry);
    }
}
