using ProxyBackup.ObjectStorage;
using System.Diagnostics;
using System.Text.Json;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;
using ProxyBackup.Simulator;
using ProxyBackup.TestSupport;
using ProxyBackup.Contracts;

namespace ProxyBackup.Cli.Tests;

/// <summary>The daemon as systemd runs it: a policy due every minute, SIGTERM in the middle of a job, a restart.</summary>
public class DaemonTests
{
    [Fact]
    public async Task Runs_policies_stops_cleanly_on_sigterm_mid_job_and_resumes()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var config = await WriteConfigAsync(w);
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "every-minute", Schedule = "* * * * *", Selection = new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" },
            Retention = new RetentionPolicy { KeepLast = 1 },
        });
        var gold = (await w.Client.VmPoolExtendedAsync()).Count(v => v.UserTemplate.Element("BACKUP_POLICY")?.Value == "gold");

        // First run: both gold VMs protected within the first minute.
        using (var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config))
        {
            await WaitFor(() => w.Catalog.Recent(20).Count(j => j.State == "succeeded") == gold && w.Catalog.Recent(20).All(j => j.State != "running"), TimeSpan.FromSeconds(100), daemon);
            // The next run's first snapshot is held in DISK_SNAPSHOT: SIGTERM lands before anything is
            // committed, and the job's cleanup cannot finish until the hold is released.
            var hold = w.Sim.Cloud.HoldTransientStates();
            await WaitFor(() => w.Catalog.Pending().Any(e => e.Kind == CloudObjectKind.DiskSnapshot && e.ObjectId is not null), TimeSpan.FromSeconds(100), daemon);
            Terminate(daemon.Process);
            Assert.False(daemon.Process.WaitForExit(2_000), "the daemon left before its job had cleaned up");
            hold.Dispose();
            Assert.True(daemon.Process.WaitForExit(60_000), "the daemon did not stop within a minute of SIGTERM");
            Assert.Equal(0, daemon.Process.ExitCode);
        }
        Assert.Contains(w.Catalog.Recent(20), j => j.State == "failed" && j.Error == "cancelled");
        Assert.DoesNotContain(w.Catalog.Recent(20), j => j.State == "running");
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);

        // Restart: the next slot runs again; retention keeps one restore point per VM.
        var before = w.Catalog.Recent(100).Count(j => j.State == "succeeded");
        using (var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config))
        {
            await WaitFor(() => w.Catalog.Recent(100).Count(j => j.State == "succeeded") >= before + gold && w.Catalog.Recent(100).All(j => j.State != "running"), TimeSpan.FromSeconds(130), daemon);
            StopDaemon(daemon);
            Assert.Equal(0, daemon.Process.ExitCode);
        }
        Assert.All(w.Repository.ListRestorePoints().GroupBy(p => p.Source), g => Assert.Single(g));
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.True((await w.Repository.VerifyAsync(readData: true)).Ok);
    }

    [Fact]
    public async Task The_cli_hands_backups_to_the_running_daemon_and_can_cancel_them()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        // An hour between scheduling steps: a backup handed over must start at once all the same.
        var (config, socket, daemon) = await StartIdleDaemonAsync(w);
        using var _ = daemon;
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket) & (UnixFileMode)0b111_111_111);

        // A second daemon on the same catalog refuses to start, names the first, and leaves its socket alone.
        var (secondCode, _, secondError) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "daemon", "--config", config);
        Assert.Equal(1, secondCode);
        Assert.Contains($"Another proxybackup daemon (pid {daemon.Process.Id}) already runs", secondError, StringComparison.Ordinal);
        Assert.True(File.Exists(socket));

        using (var cli = ChildProcess.Start("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config))
        {
            using var notAnHour = new CancellationTokenSource(TimeSpan.FromMinutes(3));
            var output = await cli.Process.StandardOutput.ReadToEndAsync(notAnHour.Token);
            var error = await cli.Process.StandardError.ReadToEndAsync(notAnHour.Token);
            await cli.Process.WaitForExitAsync(notAnHour.Token);
            Assert.True(cli.Process.ExitCode == 0, error + output);
            Assert.Contains("handed to the daemon", error, StringComparison.Ordinal);
            Assert.Contains("restore point", output, StringComparison.Ordinal);
        }
        Assert.Single(w.Repository.ListRestorePoints());

        // The console is up before the held backup starts. The simulator holds the backup's snapshot in
        // DISK_SNAPSHOT until the cancel has been asked for, so the job is surely still running then.
        w.Catalog.SavePolicy(new ProtectionPolicy { Name = "nightly", Schedule = "0 2 * * *", Selection = new VmSelection { VmNames = ["web-01"] } });
        using var tui = await OpenConsoleAsync(config);
        await tui.WaitForAsync("│web-01");
        var hold = w.Sim.Cloud.HoldTransientStates();
        using (var cli = ChildProcess.Start("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config))
        {
            await WaitFor(() => w.Catalog.Recent(10).Any(j => j.State == "running"), TimeSpan.FromSeconds(60), daemon);
            // The console shows the running backup live, as the daemon reports it; x cancels it after asking.
            await tui.WaitForAsync("Jobs: 1 running, 0 waiting", TimeSpan.FromSeconds(60));
            Assert.Matches(@"VM \d+ \(web-01\): ", tui.Screen());
            tui.Send("x");
            await tui.WaitForAsync("Cancel the backup of VM");
            tui.Send("Tab", "Enter");   // "Keep it running" is the default
            await tui.WaitForAsync("is being stopped; it cleans up after itself.");
            hold.Dispose(); // the cancelled job's cleanup needs the snapshot settled
            var output = await cli.Process.StandardOutput.ReadToEndAsync();
            var progress = await cli.Process.StandardError.ReadToEndAsync();
            await cli.Process.WaitForExitAsync();
            Assert.Equal(1, cli.Process.ExitCode);
            Assert.Contains("failed: cancelled", output, StringComparison.Ordinal);
            Assert.Matches(@"VM \d+ \(web-01\): ", progress);  // the running job, named, as the daemon reports it
        }
        // The shell's way to the same daemon: the cancelled job has ended, nothing runs to cancel.
        var (cancelCode, cancelOutput, _) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "cancel", "web-01", "--config", config);
        Assert.Equal(0, cancelCode);
        Assert.Matches(@"VM \d+ has no running backup\.", cancelOutput);
        Assert.Single(w.Repository.ListRestorePoints());
        Assert.Empty(w.Catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);
        StopDaemon(daemon);
        Assert.False(File.Exists(socket));
    }

    /// <summary>
    /// The service as systemd sees it (Type=notify): READY once the CLI can hand work over, a STATUS
    /// line, STOPPING on SIGTERM; and the log in the journal's native protocol, each job's lines
    /// carrying JOB_ID, VM_ID and POLICY, with no timestamp of the daemon's own.
    /// </summary>
    [Fact]
    public async Task Tells_systemd_it_is_ready_and_what_it_does_and_logs_to_the_journal_with_job_fields()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var config = await WriteConfigAsync(w, tickSeconds: 3600);
        using var notify = new DatagramSink(Path.Combine(w.Root, "notify.sock"));
        using var journal = new DatagramSink(Path.Combine(w.Root, "journal.sock"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(config))!;
        node["Daemon"]!["Log"] = "journal";
        node["Daemon"]!["JournalSocket"] = journal.Path;
        await File.WriteAllTextAsync(config, node.ToJsonString());
        var socket = Path.Combine(w.Root, "run", "daemon.sock");

        using var daemon = ChildProcess.Start(new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notify.Path }, "dotnet", ProxybackupDll, "daemon", "--config", config);
        await WaitFor(() => notify.Texts.Any(t => t.StartsWith("READY=1\n", StringComparison.Ordinal)), TimeSpan.FromSeconds(60), daemon);
        // Ready means the CLI can hand work over at once.
        Assert.True(File.Exists(socket));
        Assert.Contains(notify.Texts, t => t.Contains("STATUS=Idle; no enabled policy", StringComparison.Ordinal));

        var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
        Assert.True(code == 0, error + output);
        var web = await w.VmAsync("web-01");
        await journal.WaitForAsync(j => j.JournalEntries.Any(e => e["MESSAGE"].Contains("committed as restore point", StringComparison.Ordinal))
            && j.JournalEntries.Any(e => e["MESSAGE"].Contains("backed up as", StringComparison.Ordinal)), TimeSpan.FromSeconds(30));
        var committed = journal.JournalEntries.Single(e => e["MESSAGE"].Contains("committed as restore point", StringComparison.Ordinal));
        Assert.StartsWith("b", committed["JOB_ID"], StringComparison.Ordinal);
        Assert.Equal(web.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), committed["VM_ID"]);
        Assert.Equal("manual", committed["POLICY"]);
        Assert.Equal("6", committed["PRIORITY"]);
        Assert.Equal("proxybackup", committed["SYSLOG_IDENTIFIER"]);
        // The runner's own line of the same job (before retention) carries the same fields.
        var backedUp = journal.JournalEntries.Single(e => e["MESSAGE"].Contains("backed up as", StringComparison.Ordinal));
        Assert.Equal(committed["JOB_ID"], backedUp["JOB_ID"]);
        Assert.Equal("manual", backedUp["POLICY"]);
        // The journal stamps each entry: the message carries no date of its own.
        Assert.All(journal.JournalEntries, e => Assert.DoesNotMatch(@"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}", e["MESSAGE"]));

        StopDaemon(daemon);
        Assert.Equal(0, daemon.Process.ExitCode);
        await notify.WaitForAsync(n => n.Texts.Any(t => t.StartsWith("STOPPING=1\n", StringComparison.Ordinal)), TimeSpan.FromSeconds(30));
        // Everything went to the journal, nothing to the console as well.
        Assert.Equal("", await daemon.Process.StandardOutput.ReadToEndAsync());
    }

    /// <summary>
    /// `status`: the daemon, the cloud, the proxy VM, the repository's disk, the next runs and what
    /// failed, at a glance; exit 1 (for monitoring) as soon as one needs the operator.
    /// </summary>
    [Fact]
    public async Task Status_shows_the_appliance_at_a_glance_and_exits_1_when_something_needs_the_operator()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using (daemon)
        {
            w.Catalog.SavePolicy(new ProtectionPolicy { Name = "nightly", Schedule = "0 2 * * *", Selection = new VmSelection { VmNames = ["web-01", "db-01"] } });
            var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
            Assert.True(code == 0, error + output);

            (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "status", "--config", config);
            Assert.True(code == 0, error + output);
            Assert.Matches($@"(?m)^Daemon\s+running since \S+ \S+Z, pid {daemon.Process.Id}$", output);
            Assert.Matches(@"(?m)^OpenNebula\s+\S+ as oneadmin: reachable, version \S+$", output);
            Assert.Matches($@"(?m)^Proxy VM\s+{w.ProxyId} \(.+\): RUNNING$", output);
            Assert.Matches(@"(?m)^Repository\s+\S+: .+ free of .+; last verify never$", output);
            Assert.Matches(@"(?m)^  \S+ \S+Z  nightly$", output);
            Assert.EndsWith("All well.", output.Trim(), StringComparison.Ordinal);

            (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "status", "--json", "--config", config);
            Assert.True(code == 0, error + output);
            var status = JsonDocument.Parse(output).RootElement;
            Assert.True(status.GetProperty("daemon").GetProperty("running").GetBoolean());
            Assert.True(status.GetProperty("cloud").GetProperty("reachable").GetBoolean());
            Assert.True(status.GetProperty("repository").GetProperty("free_bytes").GetInt64() > 0);
            Assert.Equal("nightly", status.GetProperty("next_runs")[0].GetProperty("policy").GetString());
            Assert.Empty(status.GetProperty("problems").EnumerateArray());

            // A VM no policy protects whose last backup failed is not the check's business.
            var unprotected = (await w.Client.VmPoolAsync()).First(v => v.Name is not ("web-01" or "db-01") && v.Id != w.ProxyId);
            w.Catalog.Started("b20261204000000aa", "backup", unprotected.Id);
            w.Catalog.Finished("b20261204000000aa", false, 0, 0, null, "an unprotected VM's failure");
            // A protected VM whose last backup failed is a problem, named with its reason.
            var db = await w.VmAsync("db-01");
            w.Catalog.Started("b20261204000000ab", "backup", db.Id);
            w.Catalog.Finished("b20261204000000ab", false, 0, 0, null, "the datastore is full");
            (code, output, _) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "status", "--config", config);
            Assert.Equal(1, code);
            Assert.Contains($"  - The last backup of VM {db.Id} failed (", output, StringComparison.Ordinal);
            Assert.Contains("the datastore is full", output, StringComparison.Ordinal);
            Assert.DoesNotContain($"  - The last backup of VM {unprotected.Id} ", output, StringComparison.Ordinal);
            StopDaemon(daemon);
        }
        var (stoppedCode, stoppedOutput, _) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "status", "--config", config);
        Assert.Equal(1, stoppedCode);
        Assert.Contains("Daemon      NOT RUNNING", stoppedOutput, StringComparison.Ordinal);
        Assert.Contains("The daemon is not running", stoppedOutput, StringComparison.Ordinal);
    }

    /// <summary>
    /// The full-screen console (Terminal.Gui) under tmux: the protected VMs with their last backup, a
    /// backup started from it with b after a confirmation, watched live while the simulator holds it,
    /// and its result in the table once it ends; a restore from its dialog after a summary, bit-exact;
    /// Esc leaves.
    /// </summary>
    [Fact]
    public async Task The_console_shows_the_protected_vms_and_a_backup_started_from_it_live()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using (daemon)
        {
            w.Catalog.SavePolicy(new ProtectionPolicy { Name = "nightly", Schedule = "0 2 * * *", Selection = new VmSelection { VmNames = ["web-01", "db-01"] } });
            var web = await w.VmAsync("web-01");
            var db = await w.VmAsync("db-01");
            using var tui = await OpenConsoleAsync(config);
            await tui.WaitForAsync("All well.");
            var screen = tui.Screen();
            Assert.Contains("Daemon      running since", screen, StringComparison.Ordinal);
            Assert.Matches($@"│{web.Id}\s*│web-01\s*│nightly\s*│never", screen);
            Assert.Matches($@"│{db.Id}\s*│db-01\s*│nightly\s*│never", screen);

            // The backup is held in its snapshot while the console shows it running.
            var hold = w.Sim.Cloud.HoldTransientStates();
            if (db.Id < web.Id) tui.Send("Down");
            tui.Send("b");
            await tui.WaitForAsync($"Back up VM {web.Id} (web-01) now?");
            tui.Send("Tab", "Enter");   // Cancel is the default: Tab to "Back up"
            await tui.WaitForAsync($"Backup of VM {web.Id} (web-01) handed to the daemon.");
            await tui.WaitForAsync("Jobs: 1 running, 0 waiting", TimeSpan.FromSeconds(60));
            await tui.WaitForAsync($"VM {web.Id} (web-01): ");
            SaveScreen("console-backup-running", tui.Screen());
            hold.Dispose();
            await tui.WaitForAsync("Jobs: 0 running, 0 waiting", TimeSpan.FromSeconds(120));
            // The table follows at its next full refresh (the cloud and the catalog, every 10 s).
            await WaitFor(() => System.Text.RegularExpressions.Regex.IsMatch(tui.Screen(), $@"│{web.Id}\s*│web-01\s*│nightly\s*│\d{{4}}-\d\d-\d\d \d\d:\d\dZ│succeeded"), TimeSpan.FromSeconds(60), daemon);
            Assert.Single(w.Repository.ListRestorePoints(w.Backup.Sources.Of(web.Id)));
            SaveScreen("console-backup-done", tui.Screen());

            // r: a restore from the dialog (the latest point, the default name and NICs), after a summary.
            tui.Send("r");
            await tui.WaitForAsync($"Restore VM {web.Id} (web-01)");
            await tui.WaitForAsync("web-01-restored");
            tui.Send("Tab", "Tab", "Enter");   // past what to restore (every disk, as a new VM) to the name, then the default button (Next)
            await tui.WaitForAsync("The original VM is not touched.");
            SaveScreen("console-restore-summary", tui.Screen());
            tui.Send("Tab", "Enter");   // Restore (Cancel is the default)
            await tui.WaitForAsync($"as VM ", TimeSpan.FromSeconds(180));
            SaveScreen("console-restore-done", tui.Screen());
            var restored = await w.VmAsync("web-01-restored");
            Assert.NotEmpty(web.Disks);
            Assert.All(web.Disks.Where(d => d.ImageId is not null), d => Assert.Equal(w.DiskSha256(web.Id, d.DiskId), w.DiskSha256(restored.Id, d.DiskId)));

            // r again: the first disk to a file on the appliance (the third choice of what to restore).
            var firstDisk = web.Disks.First(d => d.ImageId is not null).DiskId;
            var file = Path.Combine(w.Root, "disk-from-the-console.raw");
            tui.Send("r");
            await tui.WaitForAsync("to a raw file on this appliance");
            tui.Send("Tab", "Down", "Down");                      // what: disk as a new image, then disk to a file
            tui.Send("Tab", "Tab", "Tab", "Tab", "Tab");          // past name, NICs and datastores to the file
            tui.Send("-l", file);
            tui.Send("Enter");
            await tui.WaitForAsync("The cloud is not touched.");
            Assert.Contains($"Write disk {firstDisk} of VM {web.Id} (web-01)", tui.Screen(), StringComparison.Ordinal);
            tui.Send("Tab", "Enter");
            await tui.WaitForAsync($"written to {file}", TimeSpan.FromSeconds(120));
            Assert.Equal(w.DiskSha256(web.Id, firstDisk), Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(file))));

            // v: what the repository holds and what retention would forget; a verify run from there.
            tui.Send("v");
            await tui.WaitForAsync("Retention at each VM's next backup:");
            await tui.WaitForAsync($"VM {web.Id} (web-01): no retention, every restore point is kept");
            Assert.Contains("1 restore point(s) of 1 VM(s)", tui.Screen(), StringComparison.Ordinal);
            SaveScreen("console-repository", tui.Screen());
            tui.Send("M-v");            // Alt+V: verify that every chunk exists
            await tui.WaitForAsync("No damage found.", TimeSpan.FromSeconds(120));
            tui.Send("Escape");
            await WaitFor(() => !tui.Screen().Contains("Protected VMs", StringComparison.Ordinal), TimeSpan.FromSeconds(30), daemon);
            StopDaemon(daemon);
        }
    }

    /// <summary>
    /// The console's policies screen under tmux: a policy made in the editor, its selection and next
    /// runs previewed while typing, an invalid schedule said so there; nothing reaches the catalog until
    /// s saves; a deletion left unsaved is discarded after asking.
    /// </summary>
    [Fact]
    public async Task The_console_edits_policies_and_writes_them_only_when_saved()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using (daemon)
        {
            using var tui = await OpenConsoleAsync(config);
            tui.Send("p");
            await tui.WaitForAsync("No policies yet: n makes one.");
            tui.Send("n");
            await tui.WaitForAsync("New policy");
            tui.Send("-l", "gold");
            tui.Send("Tab");
            tui.Send("-l", "99 * * * *");                 // typing replaces the field's text
            await tui.WaitForAsync("Not valid:");
            tui.Send("C-a");
            tui.Send("-l", "0 2 * * *");
            tui.Send("Tab", "Tab");                          // the time zone stays UTC
            tui.Send("-l", "web-01");
            await tui.WaitForAsync("Selects 1 VM(s): web-01");
            await tui.WaitForAsync("Next runs: ");
            SaveScreen("console-policy-editor", tui.Screen());
            tui.Send("Enter");                               // OK
            await tui.WaitForAsync("(not saved)");
            Assert.Empty(w.Catalog.Policies());               // nothing written before s
            tui.Send("s");
            await tui.WaitForAsync("Saved: 1 policy(ies) written, 0 removed.");
            var gold = Assert.Single(w.Catalog.Policies());
            Assert.Equal(("gold", "0 2 * * *", "UTC"), (gold.Name, gold.Schedule, gold.TimeZone));
            Assert.Equal(["web-01"], gold.Selection.VmNames);
            await WaitFor(() => tui.Screen().Contains("│web-01│gold", StringComparison.Ordinal), TimeSpan.FromSeconds(30), daemon);

            // A deletion, then Esc: asked, discarded, the policy still there.
            tui.Send("p");
            await tui.WaitForAsync("gold             0 2 * * *");
            tui.Send("d");
            await tui.WaitForAsync("No policies yet");
            tui.Send("Escape");
            await tui.WaitForAsync("Discard the changes made here?");
            tui.Send("Tab", "Enter");                        // Discard (Keep editing is the default)
            await tui.WaitForAsync("Policy changes discarded.");
            Assert.Single(w.Catalog.Policies());
            tui.Send("Escape");
            StopDaemon(daemon);
        }
    }

    /// <summary>
    /// The console's connection screen: a wrong password tested and said so, Esc writes nothing; saved
    /// all the same (it says it does not connect), the dashboard shows the cloud unreachable; put right,
    /// saved and connected.
    /// </summary>
    [Fact]
    public async Task The_console_tests_the_connection_and_saves_it_only_when_asked()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using (daemon)
        {
            var secrets = Path.Combine(Path.GetDirectoryName(config)!, "secrets.json");
            string Password() => JsonDocument.Parse(File.ReadAllText(secrets)).RootElement.GetProperty("OpenNebulaPassword").GetString()!;
            using var tui = await OpenConsoleAsync(config);
            async Task TypePasswordAsync(string password)
            {
                tui.Send("c");
                await tui.WaitForAsync("Connection to OpenNebula");
                tui.Send("Tab", "Tab");
                tui.Send("-l", password);
            }
            await TypePasswordAsync("wrong");
            tui.Send("M-t");                                           // Alt+T: Test
            await tui.WaitForAsync("Not connected: ", TimeSpan.FromSeconds(60));
            Assert.DoesNotContain("wrong", tui.Screen(), StringComparison.Ordinal);   // typed hidden
            tui.Send("Escape");
            await tui.WaitForGoneAsync("Connection to OpenNebula");
            Assert.Equal("pw", Password());

            await TypePasswordAsync("wrong");
            tui.Send("M-s");                                           // Alt+S: Save
            await tui.WaitForAsync("Connection saved to", TimeSpan.FromSeconds(60));
            await tui.WaitForAsync("Not connected: ");
            Assert.Equal("wrong", Password());
            await tui.WaitForAsync("UNREACHABLE", TimeSpan.FromSeconds(60));

            await TypePasswordAsync("pw");
            tui.Send("M-s");
            await tui.WaitForAsync("Connected: OpenNebula 6.10.5, user oneadmin", TimeSpan.FromSeconds(60));
            Assert.Equal("pw", Password());
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(secrets));
            await tui.WaitForAsync("reachable, version 6.10.5", TimeSpan.FromSeconds(60));
            tui.Send("Escape");
            StopDaemon(daemon);
        }
    }

    /// <summary>The console's snapshots screen: a VM's disk snapshot listed and deleted, a new one taken and the disk reverted to it, each after a summary.</summary>
    [Fact]
    public async Task The_console_deletes_takes_and_reverts_a_vms_disk_snapshots_after_a_summary()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using (daemon)
        {
            w.Catalog.SavePolicy(new ProtectionPolicy { Name = "nightly", Schedule = "0 2 * * *", Selection = new VmSelection { VmNames = ["web-01"] } });
            var web = await w.VmAsync("web-01");
            var disk = web.Disks.First(d => d.ImageId is not null).DiskId;
            var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "snapshot", "create", "web-01", "--disk", disk.ToString(System.Globalization.CultureInfo.InvariantCulture), "--name", "left-by-hand", "--config", config);
            Assert.True(code == 0, error + output);
            Assert.Single((await w.Client.VmInfoAsync(web.Id)).SnapshotsOf(disk));

            using var tui = await OpenConsoleAsync(config);
            await tui.WaitForAsync("│web-01");
            tui.Send("n");
            await tui.WaitForAsync($"Disk snapshots of VM {web.Id} (web-01)");
            await tui.WaitForAsync("left-by-hand");
            tui.Send("M-d");            // Alt+D: delete the selected snapshot
            await tui.WaitForAsync($"of disk {disk} of VM {web.Id} (web-01)?");
            tui.Send("Tab", "Enter");   // Delete (Cancel is the default)
            await tui.WaitForAsync($"of disk {disk} deleted.", TimeSpan.FromSeconds(120));
            Assert.Empty((await w.Client.VmInfoAsync(web.Id)).SnapshotsOf(disk));

            // A new one taken (the disk and the name in the dialog's fields), then the disk reverted to
            // it: the running VM is powered off for the revert and resumed.
            tui.Send("n");
            await tui.WaitForAsync("No disk snapshot.");
            tui.Send("M-t");            // Alt+T: take a new one
            await tui.WaitForAsync($"Take a snapshot of disk {disk} of VM {web.Id} (web-01) named 'manual'?");
            tui.Send("Tab", "Enter");
            await tui.WaitForAsync($"of disk {disk} taken.", TimeSpan.FromSeconds(120));
            var taken = Assert.Single((await w.Client.VmInfoAsync(web.Id)).SnapshotsOf(disk));
            tui.Send("n");
            await tui.WaitForAsync("manual");
            tui.Send("M-r");            // Alt+R: revert the disk to the selected snapshot
            await tui.WaitForAsync($"Revert disk {disk} of VM {web.Id} (web-01) to snapshot {taken.Id} (manual)?");
            tui.Send("Tab", "Enter");
            await tui.WaitForAsync($"reverted to snapshot {taken.Id}.", TimeSpan.FromSeconds(180));
            var reverted = await w.Client.VmInfoAsync(web.Id);
            Assert.Equal("RUNNING", reverted.StateName);
            Assert.True(Assert.Single(reverted.SnapshotsOf(disk)).Active);
            tui.Send("Escape");
            StopDaemon(daemon);
        }
    }

    /// <summary>
    /// The console's file browser (f): the selected VM's latest point opened, a volume and a directory
    /// walked, a file copied out; the session gone once the browser closes.
    /// </summary>
    [GuestDiskFact]
    public async Task The_console_browses_a_vms_files_in_its_latest_restore_point_and_copies_one_out()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: VmDiskImage.Size >> 20);
        var web = await w.VmAsync("web-01");
        VmDiskImage.Build(Path.Combine(w.Root, "guest.img"), Path.Combine(w.Root, "guest"), "pbk" + Guid.NewGuid().ToString("N")[..8]);
        File.Copy(Path.Combine(w.Root, "guest.img"), w.Sim.Cloud.DiskContentPath(web.Id, 0), overwrite: true);
        w.Catalog.SavePolicy(new ProtectionPolicy { Name = "nightly", Schedule = "0 2 * * *", Selection = new VmSelection { VmNames = ["web-01"] } });
        var config = await WriteConfigAsync(w, tickSeconds: 3600);
        var run = Path.Combine(w.Root, "files-run");
        var node = System.Text.Json.Nodes.JsonNode.Parse(await File.ReadAllTextAsync(config))!;
        node["Daemon"]!["FilesDirectory"] = run;
        await File.WriteAllTextAsync(config, node.ToJsonString());
        var (code, _, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
        Assert.True(code == 0, error);
        var home = Path.Combine(w.Root, "home");

        using var tui = new TmuxSession($"HOME={home} dotnet {ProxybackupDll} console --config {config}", width: 180, height: 45);
        await tui.WaitForAsync("Ready: b back up", TimeSpan.FromSeconds(60));
        await tui.WaitForAsync("│web-01");
        tui.Send("f");
        await tui.WaitForAsync("Volumes (disk partitions, whole disks, LVM volumes):", TimeSpan.FromSeconds(60));
        await tui.WaitForAsync("disk0p1");
        tui.Send("M-o");                                   // open disk0p1, the first volume
        await tui.WaitForAsync("/disk0p1");
        await tui.WaitForAsync("hello.txt");
        SaveScreen("console-files", tui.Screen());
        tui.Send("M-o");                                   // dir, the first entry
        await tui.WaitForAsync("/disk0p1/dir");
        tui.Send("M-u");
        await tui.WaitForGoneAsync("/disk0p1/dir");
        tui.Send("Down", "Down");                          // dir, escape, hello.txt
        tui.Send("M-g");
        await tui.WaitForAsync("Copied disk0p1/hello.txt: 1 file(s)", TimeSpan.FromSeconds(30));
        Assert.Equal("hello from ext4\n", await File.ReadAllTextAsync(Path.Combine(home, "restored", "hello.txt")));
        Assert.NotEmpty(Directory.GetDirectories(run));    // the session is open while the browser is
        tui.Send("Escape");
        await tui.WaitForGoneAsync("Copy into:");
        Assert.Empty(Directory.GetFileSystemEntries(run));
        Assert.Empty(ProxyBackup.Repository.MountTable.Under(run));
        tui.Send("Escape");
    }

    /// <summary>
    /// The repository's disk not yet mounted at boot, or not yet created: the daemon says so, keeps
    /// retrying (a first version disposed its own logger on the first failure and died on the
    /// second attempt), and starts its work once the repository is there.
    /// </summary>
    [Fact]
    public async Task Waits_for_a_missing_repository_and_starts_once_it_is_there()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var config = await WriteConfigAsync(w);
        var later = Path.Combine(w.Root, "later-repo");
        var text = (await File.ReadAllTextAsync(config)).Replace(JsonSerializer.Serialize(w.Repository.Root), JsonSerializer.Serialize(later), StringComparison.Ordinal);
        await File.WriteAllTextAsync(config, text);
        using var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config);
        var lines = new List<string>();
        async Task UntilAsync(string text)
        {
            while (true)
            {
                var line = await daemon.ReadLineAsync(TimeSpan.FromSeconds(120));
                lines.Add(line);
                if (line.Contains(text, StringComparison.Ordinal)) return;
            }
        }
        await UntilAsync($"The repository is not usable: Repository {later} does not exist");
        await UntilAsync("The repository is not usable");   // the second attempt, alive
        var (code, _, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "repository", "init", "--repo", later);
        Assert.True(code == 0, error);
        await UntilAsync($"Started: OpenNebula {w.Sim.Endpoint}");
        Assert.DoesNotContain(lines, l => l.Contains("Cannot start", StringComparison.Ordinal));
        Assert.False(daemon.Process.HasExited);
        StopDaemon(daemon);
        Assert.Equal(0, daemon.Process.ExitCode);
    }

    /// <summary>
    /// Notifications and metrics end to end: the daemon mails a failed backup through a real SMTP
    /// server (STARTTLS, AUTH, its certificate trusted through Notifications:Mail:CaCertificateFile)
    /// and keeps a Prometheus file of each VM's last backup for node exporter's textfile collector.
    /// </summary>
    [SmtpFact]
    public async Task Mails_a_failed_backup_and_keeps_metrics_of_each_vms_last_backup()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        using var smtp = await SmtpTestServer.StartAsync(Path.Combine(w.Root, "smtp"));
        var metrics = Path.Combine(w.Root, "metrics", "proxybackup.prom");
        Directory.CreateDirectory(Path.GetDirectoryName(metrics)!);
        var (config, _, daemon) = await StartIdleDaemonAsync(w, new
        {
            Mail = new { Host = "127.0.0.1", Port = smtp.Port, User = SmtpTestServer.User, From = "proxybackup@example.org", To = new[] { "ops@example.org" }, CaCertificateFile = smtp.CaCertificateFile },
            MetricsFile = metrics,
        }, SmtpTestServer.Password);
        using (daemon)
        {
            var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
            Assert.True(code == 0, error + output);

            w.Sim.Faults.Set([ProxyBackup.Simulator.FaultRule.Parse("one.vm.disksnapshotcreate,action=error,code=2048,message=the datastore is full")]);
            (code, _, _) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "db-01", "--config", config);
            Assert.Equal(1, code);
            var db = await w.VmAsync("db-01");
            var web = await w.VmAsync("web-01");

            var mail = Assert.Single(await smtp.WaitForMessagesAsync(1, TimeSpan.FromSeconds(60)));
            Assert.True(mail.Tls && mail.Authenticated);
            Assert.Equal(["ops@example.org"], mail.RcptTos);
            Assert.Contains($"] Backup of VM {db.Id} (db-01) failed", mail.Content, StringComparison.Ordinal);
            Assert.Contains("the datastore is full", mail.Content, StringComparison.Ordinal);

            // The file follows the jobs (rewritten at each scheduling step, which a finished job starts).
            await WaitFor(() => File.Exists(metrics) && File.ReadAllText(metrics).Contains($"proxybackup_last_backup_failed{{vm_id=\"{db.Id}\"}} 1", StringComparison.Ordinal), TimeSpan.FromSeconds(60), daemon);
            var text = await File.ReadAllTextAsync(metrics);
            Assert.Matches($@"(?m)^proxybackup_last_success_timestamp_seconds\{{vm_id=""{web.Id}"",vm_name=""web-01""\}} \d{{10}}$", text);
            Assert.Matches($@"(?m)^proxybackup_last_success_read_bytes\{{vm_id=""{web.Id}"",vm_name=""web-01""\}} [1-9]\d*$", text);
            Assert.Contains($"proxybackup_last_backup_failed{{vm_id=\"{web.Id}\",vm_name=\"web-01\"}} 0", text, StringComparison.Ordinal);
            Assert.Contains($"proxybackup_backup_attempts_failed_total{{vm_id=\"{db.Id}\"}} 1", text, StringComparison.Ordinal);
            Assert.Matches(@"(?m)^proxybackup_repository_free_bytes [1-9]\d*$", text);
            Assert.Contains("# TYPE proxybackup_backup_attempts_failed_total counter", text, StringComparison.Ordinal);
            // Every sample line is name{labels} value, as the text format wants.
            Assert.All(text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#')),
                l => Assert.Matches(@"^[a-z_]+(\{[a-z_]+=""[^""]*""(,[a-z_]+=""[^""]*"")*\})? -?[0-9.e+]+$", l));
            StopDaemon(daemon);
            // The mail password reached the mail server, and nothing the daemon wrote.
            var logged = await daemon.Process.StandardOutput.ReadToEndAsync() + await daemon.Process.StandardError.ReadToEndAsync();
            Assert.Contains("Backup of VM", logged, StringComparison.Ordinal);
            Assert.DoesNotContain(SmtpTestServer.Password, logged, StringComparison.Ordinal);
        }
    }

    /// <summary>
    /// What jobs of one process must not do to another's (issue 16): while the daemon's backup has
    /// its snapshots and a disk attached to the proxy (held mid-detach), an operator's 'cleanup'
    /// and a CLI restore run; both leave the daemon's objects alone, and every job succeeds.
    /// </summary>
    [Fact]
    public async Task A_cli_restore_and_a_cleanup_leave_the_daemons_running_backup_alone()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var (config, _, daemon) = await StartIdleDaemonAsync(w);
        using var _ = daemon;
        var (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
        Assert.True(code == 0, error + output);
        var baseline = w.Inventory();

        var hold = w.Sim.Cloud.HoldTransientStates(SimOperation.Detach);
        try
        {
            using var backup = ChildProcess.Start("dotnet", ProxybackupDll, "vm", "backup", "web-01", "--config", config);
            // Both streams are read from the start: a child whose progress fills a pipe would block.
            var backupOutput = backup.Process.StandardOutput.ReadToEndAsync();
            var backupError = backup.Process.StandardError.ReadToEndAsync();
            await WaitFor(() => w.Sim.Cloud.HeldOperations > 0, TimeSpan.FromSeconds(120), daemon);
            // Entries compared by what they record, not by their owner's lease, which moves on.
            static List<(long, CloudObjectKind, int?)> Entries(IEnumerable<JournalEntry> entries) => [.. entries.Select(e => (e.Id, e.Kind, e.ObjectId))];
            var journal = w.Catalog.Pending();
            Assert.Contains(journal, e => e.Kind == CloudObjectKind.DiskSnapshot);
            Assert.Contains(journal, e => e.Kind == CloudObjectKind.Attachment);
            var during = w.Inventory();
            Assert.Equal((int)baseline["proxy_disks"]! + 1, during["proxy_disks"]);
            Assert.Equal(2, during["disk_snapshots"]);

            (code, output, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "cleanup", "--config", config);
            Assert.True(code == 0, error + output);
            Assert.Contains("Removed 0 leftover object(s).", output, StringComparison.Ordinal);
            Assert.Contains($"object(s) pending", output, StringComparison.Ordinal);
            Assert.Equal(Entries(journal), Entries(w.Catalog.Pending()));

            // The restore's own cleanup pass runs before its job is recorded; its attach then waits
            // for the proxy, which the held detach keeps busy.
            using var restore = ChildProcess.Start("dotnet", ProxybackupDll, "vm", "restore", "web-01", "--name", "web-01-back", "--config", config);
            var restoreOutput = restore.Process.StandardOutput.ReadToEndAsync();
            var restoreError = restore.Process.StandardError.ReadToEndAsync();
            await WaitFor(() => w.Catalog.Recent(10).Any(j => j.Kind == "restore") || restore.Process.HasExited, TimeSpan.FromSeconds(120), daemon);
            if (restore.Process.HasExited) Assert.Fail($"The restore ended early: {await restoreError}");
            Assert.Equal(Entries(journal), Entries(w.Catalog.Pending().Where(e => e.JobId == journal[0].JobId)));
            Assert.Equal(during["disk_snapshots"], w.Inventory()["disk_snapshots"]);
            hold.Dispose();

            await restore.Process.WaitForExitAsync();
            Assert.True(restore.Process.ExitCode == 0, await restoreError + await restoreOutput);
            await backup.Process.WaitForExitAsync();
            Assert.True(backup.Process.ExitCode == 0, await backupError + await backupOutput);
        }
        finally
        {
            hold.Dispose();
        }
        Assert.Equal(2, w.Repository.ListRestorePoints().Count);
        Assert.All(w.Catalog.Recent(10), j => Assert.Equal("succeeded", j.State));
        Assert.Empty(w.Catalog.Pending());
        var after = w.Inventory();
        Assert.Equal(0, after["disk_snapshots"]);
        Assert.Equal(baseline["proxy_disks"], after["proxy_disks"]);
        Assert.Contains((await w.Client.VmPoolAsync()), v => v.Name == "web-01-back");
        StopDaemon(daemon);
    }

    [S3Fact]
    public async Task Copies_the_backups_to_S3_once_they_are_done_and_applies_the_copys_own_retention_there()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var offsite = S3TestServer.NewLocation("offsite");
        var target = BackupRepository.Create(new S3RepositoryStorage(S3Location.Parse(offsite), new S3Credentials(S3TestServer.AccessKeyId, S3TestServer.SecretAccessKey)),
            new RepositoryCreateOptions { ChunkSize = w.Repository.Config.ChunkSize, Key = RepositoryKey.FromPassphrase("offsite passphrase") });
        var config = await WriteConfigAsync(w, copies: [new { Name = "offsite", Repository = offsite, S3AccessKeyId = S3TestServer.AccessKeyId, Keep = new { KeepLast = 1 } }],
            extraSecrets: new() { ["CopyPassphrases"] = new Dictionary<string, string> { ["offsite"] = "offsite passphrase" }, ["CopyS3Secrets"] = new Dictionary<string, string> { ["offsite"] = S3TestServer.SecretAccessKey } });
        var web = (await w.Client.VmPoolExtendedAsync()).First(v => v.UserTemplate.Element("BACKUP_POLICY")?.Value == "gold");
        // An older point of one VM: the repository keeps it (the policy keeps everything), the copy's retention (keep last 1) does not.
        var older = (await w.Backup.RunAsync(web.Id, new BackupOptions())).RestorePoint;
        // One run only (the next whole minute, local time as the schedules are): nothing is backed up after the copy.
        var slot = DateTime.Now.AddSeconds(15);
        slot = slot.AddSeconds(60 - slot.Second);
        w.Catalog.SavePolicy(new ProtectionPolicy
        {
            Name = "once", Schedule = $"{slot.Minute} {slot.Hour} * * *", Selection = new VmSelection { AttributeName = "BACKUP_POLICY", AttributeValue = "gold" },
        });
        var gold = (await w.Client.VmPoolExtendedAsync()).Count(v => v.UserTemplate.Element("BACKUP_POLICY")?.Value == "gold");
        using (var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config))
        {
            await WaitFor(() => w.Catalog.Recent(20).Count(j => j.State == "succeeded") >= gold + 1, TimeSpan.FromSeconds(130), daemon);
            await WaitFor(() => target.ListRestorePoints().Count == gold && !target.ListRestorePoints().Any(p => p.Id == older.Id), TimeSpan.FromSeconds(60), daemon);
            StopDaemon(daemon);
        }
        Assert.Contains(w.Repository.ListRestorePoints(), p => p.Id == older.Id);
        // The copy holds each VM's latest point, whole and restorable.
        Assert.Equal(w.Repository.ListRestorePoints().GroupBy(p => p.Source).Select(g => g.Last().Id).Order(), target.ListRestorePoints().Select(p => p.Id).Order());
        var verified = await target.VerifyAsync(readData: true);
        Assert.True(verified.Ok);
        Assert.Equal(gold, verified.RestorePointsChecked);
        // The point the copy's retention removed there is not sent again.
        var again = await RepositoryCopy.RunAsync(w.Repository, target, new CopySelection(Keep: new RetentionPolicy { KeepLast = 1 }));
        Assert.Equal((0, 0), (again.Copied, again.ChunksWritten));
    }

    [Fact]
    public async Task Warns_at_start_when_the_memory_budget_cannot_hold_the_concurrent_jobs()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 8);
        var perJobMiB = (w.Repository.BackupMemoryAtFewest + (1 << 20) - 1) >> 20;
        var jobs = (int)(64 / perJobMiB) + 1; // one more than 64 MiB holds
        var config = await WriteConfigAsync(w, new { MaxConcurrent = jobs, MemoryMiB = 64 });
        using var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config);
        string line;
        do line = await daemon.ReadLineAsync(TimeSpan.FromSeconds(60));
        while (!line.Contains("Limits:MemoryMiB 64", StringComparison.Ordinal));
        Assert.Contains($"Limits:MaxConcurrent is {jobs}", line, StringComparison.Ordinal);
        Assert.Contains($"Set Limits:MemoryMiB to {jobs * perJobMiB} or more", line, StringComparison.Ordinal);
        StopDaemon(daemon);
    }

    [Fact]
    public async Task A_bad_configuration_is_refused_with_the_key_and_what_is_expected()
    {
        using var dir = new TempDirectory();
        var config = dir.Combine("config.json");
        await File.WriteAllTextAsync(config, "{\"OpenNebula\":{\"Endpoint\":\"ftp://x\"},\"Limits\":{\"MaxConcurrent\":0,\"MemoryMiB\":10},\"Repository\":{\"Path\":\"relative\"}," +
            "\"Copies\":[{\"Name\":\"off site\",\"Repository\":\"s3:http://u:p@host/b\",\"Schedule\":\"every day\"}]}");
        var (code, _, error) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "daemon", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains("OpenNebula:Endpoint: an http(s) URL", error, StringComparison.Ordinal);
        Assert.Contains("Limits:MaxConcurrent: 1 to 64", error, StringComparison.Ordinal);
        Assert.Contains("Limits:MemoryMiB: 64 to 65536", error, StringComparison.Ordinal);
        Assert.Contains("Repository:Path: an absolute directory path", error, StringComparison.Ordinal);
        Assert.Contains("Copies:0:Name: a name of letters", error, StringComparison.Ordinal);
        Assert.Contains("Copies:0:Repository: An S3 location carries no credentials", error, StringComparison.Ordinal);
        Assert.Contains("Copies:0:Schedule: a cron expression", error, StringComparison.Ordinal);
        Assert.DoesNotContain("u:p", error, StringComparison.Ordinal);

        await File.WriteAllTextAsync(config, "{}");
        await File.WriteAllTextAsync(dir.Combine("secrets.json"), "{\"OpenNebulaPassword\":\"s3cret\"}");
        File.SetUnixFileMode(dir.Combine("secrets.json"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.OtherRead);
        (code, _, var err2) = await ChildProcess.RunAsync("dotnet", ProxybackupDll, "daemon", "--config", config);
        Assert.Equal(1, code);
        Assert.Contains("chmod 600", err2, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", err2, StringComparison.Ordinal);
    }

    /// <summary>The appliance's configuration and 0600 secrets for the world's simulator, repository and catalog.</summary>
    private static async Task<string> WriteConfigAsync(EngineWorld w, object? limits = null, int tickSeconds = 1, object? notifications = null, string? mailPassword = null,
        object[]? copies = null, Dictionary<string, object>? extraSecrets = null)
    {
        var config = Path.Combine(w.Root, "etc", "config.json");
        Directory.CreateDirectory(Path.GetDirectoryName(config)!);
        var sections = new Dictionary<string, object>
        {
            ["OpenNebula"] = new { Endpoint = w.Sim.Endpoint.ToString(), User = "oneadmin", ProxyVmId = w.ProxyId },
            ["Repository"] = new { Path = w.Repository.Root },
            ["Catalog"] = new { Path = w.Catalog.Path },
            ["Devices"] = new { Directory = w.Sim.Cloud.Devices.DirectoryOf(w.ProxyId) },
            ["Limits"] = limits ?? new { MaxConcurrent = 2, MaxPerHost = 0, MaxPerDatastore = 0 },
            // Console: tests read the daemon's output, also when the runner inherited a journal stream.
            ["Daemon"] = new { TickSeconds = tickSeconds, GcGraceHours = 0, Socket = Path.Combine(w.Root, "run", "daemon.sock"), Log = "console" },
        };
        if (notifications is not null) sections["Notifications"] = notifications;
        if (copies is not null) sections["Copies"] = copies;
        await File.WriteAllTextAsync(config, JsonSerializer.Serialize(sections));
        var secrets = Path.Combine(w.Root, "etc", "secrets.json");
        var secretValues = new Dictionary<string, object?> { ["OpenNebulaPassword"] = "pw", ["MailPassword"] = mailPassword };
        foreach (var (name, value) in extraSecrets ?? []) secretValues[name] = value;
        await File.WriteAllTextAsync(secrets, JsonSerializer.Serialize(secretValues));
        File.SetUnixFileMode(secrets, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        return config;
    }

    /// <summary>A daemon whose scheduling steps are an hour apart (work handed to it starts at once all the same), up and listening.</summary>
    private static async Task<(string Config, string Socket, ChildProcess Daemon)> StartIdleDaemonAsync(EngineWorld w, object? notifications = null, string? mailPassword = null)
    {
        var config = await WriteConfigAsync(w, tickSeconds: 3600, notifications: notifications, mailPassword: mailPassword);
        var socket = Path.Combine(w.Root, "run", "daemon.sock");
        var daemon = ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config);
        await WaitFor(() => File.Exists(socket), TimeSpan.FromSeconds(60), daemon);
        return (config, socket, daemon);
    }

    /// <summary>The full-screen console under tmux, once its main loop reads keys.</summary>
    private static async Task<TmuxSession> OpenConsoleAsync(string config)
    {
        var tui = new TmuxSession($"dotnet {ProxybackupDll} console --config {config}", width: 180, height: 45);
        await tui.WaitForAsync("Ready: b back up", TimeSpan.FromSeconds(60));
        return tui;
    }

    /// <summary>Keeps a captured screen beside the test binaries (screens/NAME.txt), to be read or quoted after the run.</summary>
    private static void SaveScreen(string name, string screen)
    {
        var dir = Path.Combine(AppContext.BaseDirectory, "screens");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, name + ".txt"), screen);
    }

    /// <summary>SIGTERM, as systemd stops the service, and the daemon gone within a minute.</summary>
    private static void StopDaemon(ChildProcess daemon)
    {
        Terminate(daemon.Process);
        Assert.True(daemon.Process.WaitForExit(60_000));
    }

    private static void Terminate(Process p)
    {
        using var kill = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    private static async Task WaitFor(Func<bool> condition, TimeSpan timeout, ChildProcess daemon)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (daemon.Process.HasExited) throw new InvalidOperationException($"The daemon exited ({daemon.Process.ExitCode}): {await daemon.Process.StandardError.ReadToEndAsync()}{await daemon.Process.StandardOutput.ReadToEndAsync()}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException("The daemon did not get there in time.");
            await Task.Delay(200);
        }
    }
}
