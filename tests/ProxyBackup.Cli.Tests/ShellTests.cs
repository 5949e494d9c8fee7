using System.Text.RegularExpressions;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>What the .deb puts beside the binary for a shell user: bash completion and the man page.</summary>
public partial class ShellTests
{
    private static string Appliance(params string[] parts) => Path.Combine([SourceTree.Root, "appliance", .. parts]);

    /// <summary>Completes <paramref name="line"/> (the cursor at its end) in bash with the packaged completion, the CLI on PATH.</summary>
    private static async Task<string[]> CompleteAsync(TempDirectory dir, string line)
    {
        var bin = dir.Combine("bin");
        Directory.CreateDirectory(bin);
        var wrapper = Path.Combine(bin, "proxybackup");
        await File.WriteAllTextAsync(wrapper, $"#!/bin/sh\nexec dotnet '{ApplianceBinaries.ProxybackupDll}' \"$@\"\n");
        File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var script = $"""
            PATH='{bin}':$PATH
            source '{Appliance("bash-completion", "proxybackup")}'
            COMP_LINE='{line}'; COMP_POINT=${"{#COMP_LINE}"}
            read -ra COMP_WORDS <<< "$COMP_LINE"
            [[ "$COMP_LINE" == *' ' ]] && COMP_WORDS+=('')
            COMP_CWORD=$(( ${"{#COMP_WORDS[@]}"} - 1 ))
            _proxybackup
            printf '%s\n' "${"{COMPREPLY[@]}"}"
            """;
        var (code, output, error) = await ChildProcess.RunAsync("bash", "-c", script);
        Assert.True(code == 0, error);
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public async Task Bash_completes_verbs_and_options_from_the_cli_itself()
    {
        using var dir = new TempDirectory();
        Assert.Equal(["verify"], await CompleteAsync(dir, "proxybackup repository veri"));
        Assert.Equal(["list"], await CompleteAsync(dir, "proxybackup vm li"));
        Assert.Contains("--schedule", await CompleteAsync(dir, "proxybackup policy add gold --sch"));
        var verbs = await CompleteAsync(dir, "proxybackup ");
        Assert.Contains("policy", verbs);
        Assert.Contains("repository", verbs);
    }

    [GeneratedRegex(@"^\s{2}(?:[a-z]+, )?([a-z]+)\s{2,}", RegexOptions.Multiline)]
    private static partial Regex CommandLine();

    [Fact]
    public async Task The_man_page_names_every_command_and_exit_code()
    {
        var (code, help, _) = await ChildProcess.RunAsync("dotnet", ApplianceBinaries.ProxybackupDll, "--help");
        Assert.Equal(0, code);
        var commands = CommandLine().Matches(help[help.IndexOf("Commands:", StringComparison.Ordinal)..]).Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("policy", commands);
        var page = await File.ReadAllTextAsync(Appliance("man", "proxybackup.1"));
        Assert.All(commands, c => Assert.Contains($".B {c}\n", page, StringComparison.Ordinal));
        var operations = await File.ReadAllTextAsync(Path.Combine(SourceTree.Root, "docs", "operations.md"));
        var exitCodes = Regex.Matches(operations[operations.IndexOf("## Exit codes", StringComparison.Ordinal)..], @"^\| (\d+) \|", RegexOptions.Multiline).Select(m => m.Groups[1].Value).ToList();
        Assert.Contains("3", exitCodes);
        Assert.All(exitCodes, c => Assert.Contains($".B {c}\n", page, StringComparison.Ordinal));
    }
}
