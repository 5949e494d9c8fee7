using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>
/// The .deb's maintainer scripts, run as dpkg runs them, against a file tree of their own
/// (DPKG_ROOT, which dpkg-divert honours): the LVM filter diverts lvm2's file instead of replacing it.
/// </summary>
public class PackagingTests
{
    private const string Lvm2Copy = "# lvm2's own lvmlocal.conf\n";

    private static async Task RunAsync(TempDirectory root, string script, params string[] args)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("sh") { RedirectStandardError = true, RedirectStandardOutput = true };
        psi.ArgumentList.Add(Path.Combine(SourceTree.Root, "packaging", "deb", script));
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DPKG_ROOT"] = root.Path;
        using var p = System.Diagnostics.Process.Start(psi)!;
        var error = await p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        Assert.True(p.ExitCode == 0, $"{script} {string.Join(' ', args)}: {error}");
    }

    /// <summary>A tree with dpkg's database and lvm2's lvmlocal.conf in place.</summary>
    private static TempDirectory Lvm2Installed()
    {
        var root = new TempDirectory();
        Directory.CreateDirectory(root.Combine("var", "lib", "dpkg", "info"));
        File.WriteAllText(root.Combine("var", "lib", "dpkg", "status"), "");
        Directory.CreateDirectory(root.Combine("etc", "lvm"));
        File.WriteAllText(root.Combine("etc", "lvm", "lvmlocal.conf"), Lvm2Copy);
        return root;
    }

    private static string Ours => File.ReadAllText(Path.Combine(SourceTree.Root, "appliance", "lvm", "proxybackup.conf"));

    [DpkgFact]
    public async Task Installing_diverts_lvm2s_lvmlocal_conf_and_removing_gives_it_back()
    {
        using var root = Lvm2Installed();
        var conf = root.Combine("etc", "lvm", "lvmlocal.conf");

        await RunAsync(root, "preinst", "install");
        File.WriteAllText(conf, Ours); // dpkg unpacks the package's file
        Assert.Equal(Lvm2Copy, File.ReadAllText(conf + ".distrib"));
        await RunAsync(root, "postinst", "configure");
        Assert.True(Directory.Exists(root.Combine("var", "lib", "proxybackup")));

        File.Delete(conf); // dpkg removes the package's file
        await RunAsync(root, "postrm", "remove");
        Assert.Equal(Lvm2Copy, File.ReadAllText(conf));
        Assert.False(File.Exists(conf + ".distrib"));
        Assert.Equal("", File.ReadAllText(root.Combine("var", "lib", "dpkg", "diversions")).Trim());
    }

    [DpkgFact]
    public async Task Upgrading_from_the_release_that_copied_over_lvm2s_file_puts_it_back_before_diverting()
    {
        using var root = Lvm2Installed();
        var conf = root.Combine("etc", "lvm", "lvmlocal.conf");
        // What 0.1.0's postinst left: its filter in lvm2's file, lvm2's copy beside it.
        File.Move(conf, conf + ".before-proxybackup");
        File.WriteAllText(conf, Ours);

        await RunAsync(root, "preinst", "upgrade", "0.1.0");

        Assert.Equal(Lvm2Copy, File.ReadAllText(conf + ".distrib"));
        Assert.False(File.Exists(conf + ".before-proxybackup"));
    }
}

/// <summary>A test of the .deb's maintainer scripts: it needs dpkg's tools (a Debian system).</summary>
public sealed class DpkgFactAttribute : FactAttribute
{
    public DpkgFactAttribute()
    {
        if (!File.Exists("/usr/bin/dpkg-divert")) Skip = "needs dpkg-divert (a Debian system)";
    }
}

/// <summary>The marketplace entry the image build writes (packaging/marketplace-entry), from a real qcow2 made here.</summary>
public class MarketplaceEntryTests
{
    private static Task<(int Code, string Output, string Error)> EntryAsync(params string[] args) =>
        ChildProcess.RunAsync("python3", [Path.Combine(SourceTree.Root, "packaging", "marketplace-entry"), .. args]);

    [Fact]
    public async Task The_entry_carries_the_images_virtual_size_in_bytes_its_checksums_an_absolute_url_the_time_and_the_version()
    {
        using var dir = new TempDirectory();
        var image = dir.Combine("proxybackup.qcow2");
        var (code, _, error) = await ChildProcess.RunAsync("qemu-img", "create", "-q", "-f", "qcow2", image, "96M");
        Assert.True(code == 0, error);
        var before = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        (code, var yaml, error) = await EntryAsync(image, "--url", "https://downloads.example.org/proxybackup.qcow2");
        Assert.True(code == 0, error);
        var bytes = await File.ReadAllBytesAsync(image);
        string Value(string key) => System.Text.RegularExpressions.Regex.Match(yaml, $@"(?m)^\s*-?\s*{key}: '?([^'\n]*)'?$").Groups[1].Value;
        Assert.Equal((96L << 20).ToString(System.Globalization.CultureInfo.InvariantCulture), Value("size"));
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.MD5.HashData(bytes)), Value("md5"));
        Assert.Equal(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes)), Value("sha256"));
        Assert.Equal("https://downloads.example.org/proxybackup.qcow2", Value("url"));
        Assert.Equal("qcow2", Value("driver"));
        Assert.Equal((await File.ReadAllTextAsync(Path.Combine(SourceTree.Root, "VERSION"))).Trim(), Value("version"));
        Assert.InRange(long.Parse(Value("creation_time"), System.Globalization.CultureInfo.InvariantCulture), before, before + 600);
        Assert.DoesNotMatch("@[A-Z_]+@", yaml);

        // The template's user inputs and context are the same names as the VM template's.
        var template = await File.ReadAllTextAsync(Path.Combine(SourceTree.Root, "packaging", "opennebula", "proxybackup.tmpl"));
        var inputs = System.Text.RegularExpressions.Regex.Matches(template, @"(?m)^\s*(PROXYBACKUP_[A-Z_]+)\s*=\s*""[MO]\|").Select(m => m.Groups[1].Value).ToList();
        Assert.Equal(6, inputs.Count);
        foreach (var input in inputs)
        {
            Assert.Contains($"{input.ToLowerInvariant()}: ${input}", yaml, StringComparison.Ordinal);
            Assert.Matches($"(?m)^    {input.ToLowerInvariant()}: [MO]\\|", yaml);
        }

        (code, _, error) = await EntryAsync(image, "--url", "proxybackup.qcow2");
        Assert.Equal(1, code);
        Assert.Contains("an absolute http(s) URL", error, StringComparison.Ordinal);
    }
}
