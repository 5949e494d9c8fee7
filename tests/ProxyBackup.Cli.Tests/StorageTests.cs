using System.Security.Cryptography;
using System.Text.Json;
using ProxyBackup.TestSupport;
using static ProxyBackup.Cli.Tests.ApplianceBinaries;

namespace ProxyBackup.Cli.Tests;

/// <summary>
/// The repository's own disk (docs/operations.md, "Repository storage"), on loop devices: formatted
/// only when blank and agreed, mounted and recorded by UUID, refused while unmounted, found again
/// as it was by a re-created proxy.
/// </summary>
public class StorageTests
{
    [RootFact]
    public async Task The_repository_disk_is_formatted_only_when_blank_and_agreed_refused_while_unmounted_and_kept_by_a_new_proxy()
    {
        using var dir = new TempDirectory();
        using var disk = new LoopDevice(dir.Combine("repository.img"), 64 << 20);
        var mount = dir.Combine("srv", "proxybackup");
        var fstab = dir.Combine("fstab");
        const string systemLine = "UUID=0b5e8c2a-1111-4c4c-9a9a-123456789abc / ext4 errors=remount-ro 0 1";
        await File.WriteAllTextAsync(fstab, $"# the system's own lines stay\n{systemLine}\n");
        var config = await ApplianceConfigAsync(dir, "first", mount);
        string[] Storage(string configFile, params string[] args) => ["storage", .. args, "--config", configFile, "--fstab", fstab];

        // Blank, without consent: refused, the disk untouched.
        var (code, _, error) = await ProxybackupAsync(Storage(config, "setup", "--disk", disk.Path));
        Assert.Equal(1, code);
        Assert.Contains($"{disk.Path} is blank: give --format", error, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => LoopDevice.Run("blkid", "-p", disk.Path));
        Assert.Null(MountPointOf(config));

        // With consent: formatted, mounted, recorded by UUID beside the system's own lines.
        (code, var output, error) = await ProxybackupAsync(Storage(config, "setup", "--disk", disk.Path, "--format"));
        Assert.True(code == 0, error);
        Assert.Contains("was blank: formatted with ext4", output, StringComparison.Ordinal);
        var uuid = LoopDevice.Run("blkid", "-p", "-s", "UUID", "-o", "value", disk.Path).Trim();
        Assert.Matches("^[0-9a-f-]{36}$", uuid);
        var lines = await File.ReadAllLinesAsync(fstab);
        Assert.Contains(systemLine, lines);
        Assert.Contains($"UUID={uuid} {mount} ext4 defaults,nofail,x-systemd.device-timeout=30s 0 2", lines);
        Assert.True(IsMounted(mount));
        Assert.Equal(mount, MountPointOf(config));

        // A repository and a backup on it, through the configuration (no --repo).
        var data = dir.Combine("data.img");
        await File.WriteAllBytesAsync(data, RandomNumberGenerator.GetBytes(1 << 20));
        (code, _, error) = await ProxybackupAsync("repository", "init", "--repo", mount, "--chunk-size", "64K", "--config", config);
        Assert.True(code == 0, error);
        (code, _, error) = await ProxybackupAsync("repository", "backup", "--source", "vm-1", "--disk", $"0={data}", "--config", config);
        Assert.True(code == 0, error);

        // Unmounted (a disk missing at boot, nofail): refused, and nothing lands on the disk below.
        LoopDevice.Run("umount", mount);
        (code, _, error) = await ProxybackupAsync("repository", "backup", "--source", "vm-1", "--disk", $"0={data}", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains($"The repository disk is not mounted at {mount}", error, StringComparison.Ordinal);
        Assert.Empty(Directory.EnumerateFileSystemEntries(mount));
        (code, output, _) = await ProxybackupAsync(Storage(config, "show"));
        Assert.Equal(0, code);
        Assert.Contains($"{mount}: NOT MOUNTED", output, StringComparison.Ordinal);

        // A new proxy from the template, the same disk: kept as it was, its restore point listed again.
        await File.WriteAllTextAsync(fstab, "");
        var recreated = await ApplianceConfigAsync(dir, "second", mount);
        (code, output, error) = await ProxybackupAsync(Storage(recreated, "setup", "--disk", disk.Path, "--format"));
        Assert.True(code == 0, error);
        Assert.Contains("holds an ext4 file system labelled proxybackup-repo: kept as it is, not formatted", output, StringComparison.Ordinal);
        Assert.Contains("The disk holds a repository with 1 restore point(s)", output, StringComparison.Ordinal);
        Assert.Equal(uuid, LoopDevice.Run("blkid", "-p", "-s", "UUID", "-o", "value", disk.Path).Trim());
        (code, output, error) = await ProxybackupAsync("catalog", "points", "--json", "--config", recreated);
        Assert.True(code == 0, error);
        Assert.Equal("vm-1", JsonDocument.Parse(output).RootElement.EnumerateArray().Single().GetProperty("source").GetString());
        var back = dir.Combine("back.img");
        (code, _, error) = await ProxybackupAsync("repository", "restore", "--source", "vm-1", "--disk", "0", "--to", back, "--config", recreated);
        Assert.True(code == 0, error);
        Assert.Equal(await File.ReadAllBytesAsync(data), await File.ReadAllBytesAsync(back));

        // A disk that holds anything else is never formatted, consent or not.
        using var other = new LoopDevice(dir.Combine("other.img"), 16 << 20);
        var foreign = RandomNumberGenerator.GetBytes(4096);
        await using (var device = new FileStream(other.Path, FileMode.Open, FileAccess.Write)) await device.WriteAsync(foreign);
        (code, _, error) = await ProxybackupAsync(Storage(await ApplianceConfigAsync(dir, "third", dir.Combine("elsewhere")), "setup", "--disk", other.Path, "--format"));
        Assert.Equal(1, code);
        Assert.Contains($"{other.Path} is not blank (unknown data)", error, StringComparison.Ordinal);
        var now = new byte[4096];
        await using (var device = new FileStream(other.Path, FileMode.Open, FileAccess.Read)) await device.ReadExactlyAsync(now);
        Assert.Equal(foreign, now);
    }

    [RootFact]
    public async Task A_mount_point_holding_files_is_refused_before_anything_is_formatted()
    {
        using var dir = new TempDirectory();
        using var disk = new LoopDevice(dir.Combine("repository.img"), 32 << 20);
        var mount = dir.Combine("srv", "proxybackup");
        Directory.CreateDirectory(mount);
        await File.WriteAllTextAsync(Path.Combine(mount, "written-to-the-root-disk"), "a repository made before the disk was there");
        var fstab = dir.Combine("fstab");
        var config = await ApplianceConfigAsync(dir, "etc", mount);
        var (code, _, error) = await ProxybackupAsync("storage", "setup", "--disk", disk.Path, "--format", "--config", config, "--fstab", fstab);
        Assert.Equal(1, code);
        Assert.Contains($"{mount} holds files", error, StringComparison.Ordinal);
        Assert.Throws<InvalidOperationException>(() => LoopDevice.Run("blkid", "-p", disk.Path));   // still blank
        Assert.False(File.Exists(fstab));
        Assert.Null(MountPointOf(config));
        Assert.True(File.Exists(Path.Combine(mount, "written-to-the-root-disk")));
    }

    [RootFact]
    public async Task The_full_screen_console_puts_the_repository_on_its_disk_after_a_summary()
    {
        using var dir = new TempDirectory();
        using var disk = new LoopDevice(dir.Combine("repository.img"), 64 << 20);
        var (mount, fstab, config) = await BlankApplianceAsync(dir);

        using (var tui = new TmuxSession($"dotnet {ProxybackupDll} console --config {config} --fstab {fstab}", width: 160, height: 40))
        {
            await tui.WaitForAsync("Ready: b back up", TimeSpan.FromSeconds(60));
            async Task ChooseTheDiskAsync()
            {
                tui.Send("s");
                await tui.WaitForAsync("is on the root disk: it is lost with this VM");
                // No other disk in this machine: the first choice is a device typed below it.
                tui.Send("Tab");
                tui.Send("-l", disk.Path);
                tui.Send("Enter");
                await tui.WaitForAsync($"Format {disk.Path} (64.0 MiB, blank) with ext4, mount it at {mount}");
            }
            await ChooseTheDiskAsync();
            tui.Send("Enter");                                    // Cancel is the default: nothing happens
            await tui.WaitForGoneAsync("with ext4, mount it at");
            Assert.Throws<InvalidOperationException>(() => LoopDevice.Run("blkid", "-p", disk.Path));
            await ChooseTheDiskAsync();
            tui.Send("Tab", "Enter");                             // Go ahead
            await tui.WaitForAsync("was blank: formatted with ext4 (label proxybackup-repo). Mounted at", TimeSpan.FromSeconds(60));
            tui.Send("Escape");
        }
        await AssertMountedAndRecordedAsync(disk, mount, fstab, config);
    }

    [Fact]
    public async Task Setup_names_what_to_give_when_the_choice_is_missing_or_malformed()
    {
        using var dir = new TempDirectory();
        var config = await ApplianceConfigAsync(dir, "etc", dir.Combine("srv"));
        var (code, _, error) = await ProxybackupAsync("storage", "setup", "--config", config);
        Assert.Equal(2, code);
        Assert.Contains("Give --disk DEVICE or --nfs HOST:/PATH", error, StringComparison.Ordinal);
        (code, _, error) = await ProxybackupAsync("storage", "setup", "--nfs", "nas-only-a-host", "--config", config, "--fstab", dir.Combine("fstab"));
        Assert.Equal(1, code);
        Assert.Contains("--nfs nas-only-a-host: an export as host:/path", error, StringComparison.Ordinal);
        Assert.False(File.Exists(dir.Combine("fstab")));
    }

    /// <summary>An appliance whose repository is on the root disk yet: its mount point, an empty fstab, its configuration.</summary>
    private static async Task<(string Mount, string Fstab, string Config)> BlankApplianceAsync(TempDirectory dir)
    {
        var mount = dir.Combine("srv", "proxybackup");
        var fstab = dir.Combine("fstab");
        await File.WriteAllTextAsync(fstab, "");
        return (mount, fstab, await ApplianceConfigAsync(dir, "etc", mount));
    }

    /// <summary>The disk is mounted at the mount point, recorded in the fstab by its UUID and in the configuration.</summary>
    private static async Task AssertMountedAndRecordedAsync(LoopDevice disk, string mount, string fstab, string config)
    {
        Assert.Equal(mount, MountPointOf(config));
        Assert.True(IsMounted(mount));
        var uuid = LoopDevice.Run("blkid", "-p", "-s", "UUID", "-o", "value", disk.Path).Trim();
        Assert.Contains($"UUID={uuid} {mount} ext4 defaults,nofail", await File.ReadAllTextAsync(fstab), StringComparison.Ordinal);
    }

    /// <summary>An appliance configuration in its own folder (config, 0600 secrets, catalog) with the repository at <paramref name="repository"/>.</summary>
    private static async Task<string> ApplianceConfigAsync(TempDirectory dir, string name, string repository)
    {
        var folder = dir.Combine(name);
        Directory.CreateDirectory(folder);
        var config = Path.Combine(folder, "config.json");
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(new
        {
            OpenNebula = new { Endpoint = "http://127.0.0.1:9/RPC2" },
            Repository = new { Path = repository },
            Catalog = new { Path = Path.Combine(folder, "catalog.db") },
        }));
        var secrets = Path.Combine(folder, "secrets.json");
        await File.WriteAllTextAsync(secrets, "{}");
        File.SetUnixFileMode(secrets, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return config;
    }

    private static string? MountPointOf(string config) =>
        JsonDocument.Parse(File.ReadAllText(config)).RootElement.GetProperty("Repository").TryGetProperty("MountPoint", out var m) ? m.GetString() : null;

    private static bool IsMounted(string path) => File.ReadAllLines("/proc/self/mountinfo").Any(l => l.Split(' ')[4] == path);
}
