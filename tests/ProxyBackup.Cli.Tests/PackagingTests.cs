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
