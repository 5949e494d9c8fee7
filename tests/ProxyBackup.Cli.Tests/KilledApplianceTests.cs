using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Cli.Tests;

/// <summary>The appliance process is killed in the middle of reading a disk; the next start cleans up.</summary>
public class KilledApplianceTests
{
    [Fact]
    public async Task A_backup_killed_mid_read_leaves_leftovers_that_the_next_start_removes()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 64);
        var web = await w.VmAsync("web-01");
        var before = w.Inventory();
        var common = await WorldArgsAsync(w);

        using (var appliance = ChildProcess.Start("dotnet", [ProxybackupDll, "vm", "backup", "web-01", .. common]))
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            string? line;
            do line = await appliance.Process.StandardError.ReadLineAsync(timeout.Token);
            while (line is not null && !line.StartsWith("backup", StringComparison.Ordinal));
            Assert.NotNull(line);
            appliance.Process.Kill(entireProcessTree: true);
            await appliance.Process.WaitForExitAsync(timeout.Token);
        }
        var mid = w.Inventory();
        Assert.True((int)mid["disk_snapshots"]! > 0, "the killed job had taken snapshots");
        Assert.Equal(2, mid["proxy_disks"]);
        Assert.NotEmpty(w.Catalog.Pending());
        Assert.Empty(w.Repository.ListRestorePoints());
        // Its job no longer reads "running": it is recorded as interrupted, with when it was last seen.
        Assert.Equal(1, w.Catalog.MarkInterrupted());
        var interrupted = Assert.Single(w.Catalog.Recent(10));
        Assert.Equal("interrupted", interrupted.State);
        Assert.Contains("last seen", interrupted.Error, StringComparison.Ordinal);

        // The next start of the appliance runs the cleanup pass first. The job prepares its next disk
        // while it reads one, so the kill may fall between journaling an image and asking for it:
        // that entry, whose request may still reach the front-end, is kept for the grace period, and
        // nothing of that name exists: pending, not a failure. Everything else goes.
        var report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        Assert.All(report.Pending, f => Assert.Contains("not found yet", f, StringComparison.Ordinal));
        var images = ((List<object?>)w.Inventory()["images"]!).Cast<string>().ToList();
        Assert.All(w.Catalog.Pending(), e =>
        {
            Assert.Null(e.ObjectId);
            Assert.DoesNotContain(e.Name, images);
        });
        Assert.Equal(report.Pending.Count, w.Catalog.Pending().Count);
        var after = w.Inventory();
        Assert.Equal(before["disk_snapshots"], after["disk_snapshots"]);
        Assert.Equal(before["proxy_disks"], after["proxy_disks"]);
        Assert.Equal(((List<object?>)before["images"]!).Count, ((List<object?>)after["images"]!).Count);

        // The dead process's guard on the VM does not block the next backup.
        var ok = await w.Backup.RunAsync(web.Id, new BackupOptions());
        Assert.Equal(2, ok.Disks.Count);
    }

    [Fact]
    public async Task A_backup_killed_between_its_two_snapshot_deletes_leaves_a_restore_point_and_nothing_the_next_start_misses()
    {
        // Snapshot ids are per disk (both disks of web-01 have snapshot 0): the kill lands while the
        // first delete waits, the second is still to come. Its entry must survive for the cleanup.
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var before = w.Inventory();
        w.Sim.Faults.Set([ProxyBackup.Simulator.FaultRule.Parse("one.vm.disksnapshotdelete,nth=1,action=delay,latency=30000")]);
        using (var appliance = ChildProcess.Start("dotnet", [ProxybackupDll, "vm", "backup", "web-01", .. await WorldArgsAsync(w)]))
        {
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (w.Repository.ListRestorePoints().Count == 0 && !appliance.Process.HasExited && DateTime.UtcNow < deadline) await Task.Delay(50);
            Assert.False(appliance.Process.HasExited, "the backup ended before it could be killed");
            appliance.Process.Kill(entireProcessTree: true);
            await appliance.Process.WaitForExitAsync();
        }
        w.Sim.Faults.Set([]);
        Assert.Single(w.Repository.ListRestorePoints());   // committed before the deletes
        Assert.Equal(2, w.Catalog.Pending().Count(e => e.Kind == CloudObjectKind.DiskSnapshot));
        Assert.Equal(1, w.Catalog.MarkInterrupted());

        var report = await w.Cleaner.CleanAsync();
        Assert.Empty(report.Failures);
        Assert.Empty(w.Catalog.Pending());
        var after = w.Inventory();
        Assert.Equal(before["disk_snapshots"], after["disk_snapshots"]);
        Assert.Equal(before["proxy_disks"], after["proxy_disks"]);
    }

    [Fact]
    public async Task A_cleanup_pass_leaves_alone_what_a_running_job_of_another_process_created()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var common = await WorldArgsAsync(w);
        // The other process's backup is held with its first snapshot in DISK_SNAPSHOT.
        var hold = w.Sim.Cloud.HoldTransientStates();
        using var other = ChildProcess.Start("dotnet", [ProxybackupDll, "vm", "backup", "web-01", .. common]);
        try
        {
            var deadline = DateTime.UtcNow.AddSeconds(120);
            while (!w.Catalog.Pending().Any(e => e.Kind == CloudObjectKind.DiskSnapshot && e.ObjectId is not null) && DateTime.UtcNow < deadline)
                await Task.Delay(100);
            var entry = Assert.Single(w.Catalog.Pending());

            var report = await w.Cleaner.CleanAsync();   // this process's pass, as 'proxybackup cleanup' or a restore runs it

            Assert.Equal(0, report.Removed);
            Assert.Empty(report.Failures);
            Assert.Contains($"owned by job {entry.JobId}, still running (pid {other.Process.Id} ", Assert.Single(report.Pending), StringComparison.Ordinal);
            var left = Assert.Single(w.Catalog.Pending());
            Assert.Equal((entry.Id, entry.ObjectId), (left.Id, left.ObjectId));   // its owner's lease moves on
        }
        finally
        {
            hold.Dispose();
        }
        var output = await other.Process.StandardOutput.ReadToEndAsync();
        var error = await other.Process.StandardError.ReadToEndAsync();
        await other.Process.WaitForExitAsync();
        Assert.True(other.Process.ExitCode == 0, output + error);   // the other job was not harmed
        Assert.Single(w.Repository.ListRestorePoints(w.Backup.Sources.Of(web.Id)));
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
    }

    [Fact]
    public async Task Bad_credentials_and_an_unreachable_endpoint_give_one_clear_line()
    {
        await using var w = await EngineWorld.StartAsync();
        var auth = Path.Combine(w.Root, "bad_auth");
        await File.WriteAllTextAsync(auth, "oneadmin:wrong");
        var (code, error) = await RunAsync("vm", "list", "--endpoint", w.Sim.Endpoint.ToString(), "--auth-file", auth, "--repo", w.Repository.Root);
        Assert.Equal(1, code);
        Assert.Equal($"proxybackup: {auth} is readable by others: it holds secrets. Fix it with: chmod 600 {auth}", error);

        File.SetUnixFileMode(auth, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        (code, error) = await RunAsync("vm", "list", "--endpoint", w.Sim.Endpoint.ToString(), "--auth-file", auth, "--repo", w.Repository.Root);
        Assert.Equal(1, code);
        Assert.Equal("proxybackup: [one.vmpool.info] User couldn't be authenticated, aborting call.", error);

        await WritePrivateAsync(auth, "oneadmin:pw");
        (code, error) = await RunAsync("vm", "list", "--endpoint", "http://127.0.0.1:9/RPC2", "--auth-file", auth, "--repo", w.Repository.Root);
        Assert.Equal(1, code);
        Assert.StartsWith("proxybackup: Cannot reach http://127.0.0.1:9/RPC2: the connection was refused.", error, StringComparison.Ordinal);

        (code, error) = await RunAsync("vm", "backup", "424242", "--endpoint", w.Sim.Endpoint.ToString(), "--auth-file", auth, "--proxy-vm", w.ProxyId.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--catalog", Path.Combine(w.Root, "c2.db"), "--repo", w.Repository.Root);
        Assert.Equal(1, code);
        Assert.Equal("proxybackup: [one.vm.info] Error getting virtual machine [424242].", error);
    }

    [Theory]
    [InlineData(ScriptedEndpoint.Echo.HttpError)]
    [InlineData(ScriptedEndpoint.Echo.FailureReply)]
    public async Task An_endpoint_that_echoes_the_request_never_gets_the_password_onto_the_screen_or_into_the_catalog(ScriptedEndpoint.Echo echo)
    {
        const string Password = "n0t-For-Your-Eyes";
        using var dir = new TempDirectory();
        await using var endpoint = ScriptedEndpoint.Echoing(echo);
        var auth = dir.Combine("one_auth");
        await WritePrivateAsync(auth, $"oneadmin:{Password}");
        var catalog = dir.Combine("catalog.db");
        var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "7", "--endpoint", endpoint.Uri.ToString(), "--auth-file", auth,
            "--proxy-vm", "3", "--catalog", catalog, "--repo", dir.Combine("repo"));
        Assert.Equal(1, code);
        Assert.Contains("***", error, StringComparison.Ordinal);   // the echo reached the screen, scrubbed
        var jobs = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "jobs", "--catalog", catalog);
        var catalogBytes = Directory.EnumerateFiles(dir.Path, "catalog.db*").SelectMany(File.ReadAllBytes).ToArray();
        foreach (var text in new[] { output, error, jobs.Output, jobs.Error, System.Text.Encoding.Latin1.GetString(catalogBytes) })
            Assert.DoesNotContain(Password, text, StringComparison.Ordinal);
    }

    private static async Task WritePrivateAsync(string path, string content)
    {
        await File.WriteAllTextAsync(path, content);
        File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
    }

    private static async Task<(int Code, string Error)> RunAsync(params string[] args)
    {
        var (code, _, error) = await ChildProcess.RunAsync("dotnet", [ProxybackupDll, .. args]);
        return (code, error.Trim());
    }
}
