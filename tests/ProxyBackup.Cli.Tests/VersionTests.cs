using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>One version everywhere: the VERSION file is what the binary says (the packages take it at build, the marketplace entry in MarketplaceEntryTests).</summary>
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
}
