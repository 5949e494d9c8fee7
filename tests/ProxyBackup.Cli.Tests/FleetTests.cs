using System.Diagnostics;
using System.Text.Json;
using ProxyBackup.Catalog;
using ProxyBackup.Contracts;
using ProxyBackup.Engine.Tests;
using ProxyBackup.TestSupport;
using static ProxyBackup.Cli.Tests.ApplianceBinaries;

namespace ProxyBackup.Cli.Tests;

/// <summary>Several proxies, two daemons with a proxy VM each, sharing one PostgreSQL catalog and one repository (docs/architecture.md, "Several proxies").</summary>
public sealed class FleetTests
{
    private const int FleetVms = 16;

    [PostgresFact]
    public async Task Two_proxies_back_up_each_vm_once_and_one_takes_over_what_a_killed_one_held()
    {
        await using var w = await EngineWorld.StartAsync(diskMb: 2);
        w.Sim.Cloud.SeedFleet(FleetVms, diskMb: 1, extraProxies: 1);
        await w.Sim.Cloud.WaitIdleAsync(TimeSpan.FromSeconds(60));
        var pool = await w.Client.VmPoolAsync();
        var secondProxy = pool.Single(v => v.Name == "proxybackup-2").Id;
        var fleet = pool.Where(v => v.Name.StartsWith("fleet-", StringComparison.Ordinal)).Select(v => v.Id).Order().ToList();
        var postgres = PostgresTestServer.NewDatabase();
        using var catalog = SqlCatalog.Postgres(postgres);
        // One daily slot, the next whole minute at least 20 s away: both daemons are up before it, and it comes once.
        var now = DateTimeOffset.UtcNow;
        var slot = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, now.Minute, 0, TimeSpan.Zero).AddMinutes(now.Second < 40 ? 1 : 2);
        catalog.SavePolicy(new ProtectionPolicy { Name = "fleet", Schedule = $"{slot.Minute} {slot.Hour} * * *", Selection = new VmSelection { Label = "fleet" } });

        using var first = StartDaemon(w, "a", w.ProxyId, postgres);
        using var second = StartDaemon(w, "b", secondProxy, postgres);
        var ownerOfFirst = first.Daemon.Process.Id;

        // Proxy A is killed once it has finished some VMs and holds at least one mid-backup.
        await WaitFor(() => Runs(postgres).Count(r => r.Pid == ownerOfFirst && r.State == "done") >= 2 && Runs(postgres).Any(r => r.Pid == ownerOfFirst && r.State == "running"),
            TimeSpan.FromSeconds(200), first, second);
        var heldByKilled = Runs(postgres).Where(r => r.Pid == ownerOfFirst && r.State == "running").Select(r => r.VmId).ToList();
        first.Daemon.Process.Kill();
        first.Daemon.Process.WaitForExit();

        // Proxy B finishes the run, with what A held.
        await WaitFor(() => Runs(postgres).Count(r => r.State == "done") == FleetVms, TimeSpan.FromSeconds(300), second);
        var runs = Runs(postgres);
        Assert.Equal(fleet, runs.Select(r => r.VmId).Order());
        Assert.All(runs, r => Assert.Equal("succeeded", r.Outcome));
        Assert.All(heldByKilled, vm => Assert.Equal(second.Daemon.Process.Id, runs.Single(r => r.VmId == vm).Pid));
        Assert.Contains(runs, r => r.Pid == ownerOfFirst);

        // No VM backed up twice, none lost: one succeeded job and one restore point each; the killed proxy's jobs read interrupted.
        catalog.MarkInterrupted();
        var jobs = catalog.Recent(1000).Where(j => j.Kind == "backup").ToList();
        Assert.All(fleet, vm => Assert.Single(jobs, j => j.VmId == vm && j.State == "succeeded"));
        Assert.All(heldByKilled, vm => Assert.Single(jobs, j => j.VmId == vm && j.State == "interrupted"));
        Assert.All(fleet, vm => Assert.Single(w.Repository.ListRestorePoints(w.Backup.Sources.Of(vm))));
        Assert.DoesNotContain(jobs, j => j.State == "running");
        // What the killed proxy left on the cloud (its snapshot, its proxy VM's attached image) was cleaned by the other.
        Assert.Empty(catalog.Pending());
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.Equal(1, w.Inventory()["proxy_disks"]);
        Assert.DoesNotContain(((List<object?>)w.Inventory()["images"]!).OfType<string>(), i => i.StartsWith("pb-", StringComparison.Ordinal));
        StopDaemon(second);
        Assert.True((await w.Repository.VerifyAsync(readData: true)).Ok);
    }

    private sealed record QueueRow(int VmId, string State, int? Pid, string? Outcome);

    private static List<QueueRow> Runs(string postgres)
    {
        using var c = new Npgsql.NpgsqlConnection(postgres);
        c.Open();
        using var cmd = new Npgsql.NpgsqlCommand("SELECT vm_id, state, owner_pid, outcome FROM run_queue WHERE policy = 'fleet';", c);
        using var r = cmd.ExecuteReader();
        var rows = new List<QueueRow>();
        while (r.Read()) rows.Add(new QueueRow(r.GetInt32(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetInt32(2), r.IsDBNull(3) ? null : r.GetString(3)));
        return rows;
    }

    /// <summary>A daemon whose output is read as it comes (its log would otherwise fill the pipe and stop it).</summary>
    private sealed class RunningDaemon(ChildProcess daemon) : IDisposable
    {
        private readonly System.Text.StringBuilder _output = new();

        public ChildProcess Daemon { get; } = daemon;

        public void Drain()
        {
            Daemon.Process.OutputDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
            Daemon.Process.ErrorDataReceived += (_, e) => { lock (_output) _output.AppendLine(e.Data); };
            Daemon.Process.BeginOutputReadLine();
            Daemon.Process.BeginErrorReadLine();
        }

        public string Output { get { lock (_output) return _output.ToString(); } }

        public void Dispose() => Daemon.Dispose();
    }

    /// <summary>A daemon for one proxy VM: its own state folder, socket and devices; the shared catalog and repository.</summary>
    private static RunningDaemon StartDaemon(EngineWorld w, string name, int proxyVm, string postgres)
    {
        var etc = Path.Combine(w.Root, name);
        Directory.CreateDirectory(etc);
        var config = Path.Combine(etc, "config.json");
        File.WriteAllText(config, JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["OpenNebula"] = new { Endpoint = w.Sim.Endpoint.ToString(), User = "oneadmin", ProxyVmId = proxyVm },
            ["Repository"] = new { Path = w.Repository.Root },
            ["Catalog"] = new { Path = Path.Combine(etc, "state", "catalog.db"), Postgres = postgres },
            ["Devices"] = new { Directory = w.Sim.Cloud.Devices.DirectoryOf(proxyVm) },
            ["Limits"] = new { MaxConcurrent = 2, MaxPerHost = 0, MaxPerDatastore = 0 },
            ["Daemon"] = new { TickSeconds = 1, GcGraceHours = 0, Socket = Path.Combine(etc, "daemon.sock"), Log = "console" },
        }));
        var secrets = Path.Combine(etc, "secrets.json");
        File.WriteAllText(secrets, JsonSerializer.Serialize(new { OpenNebulaPassword = "pw" }));
        File.SetUnixFileMode(secrets, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        var daemon = new RunningDaemon(ChildProcess.Start("dotnet", ProxybackupDll, "daemon", "--config", config));
        daemon.Drain();
        return daemon;
    }

    private static void StopDaemon(RunningDaemon daemon)
    {
        using (var kill = Process.Start("kill", ["-TERM", daemon.Daemon.Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])!) kill.WaitForExit();
        Assert.True(daemon.Daemon.Process.WaitForExit(60_000), "the daemon did not stop within a minute of SIGTERM");
    }

    private static async Task WaitFor(Func<bool> condition, TimeSpan timeout, params RunningDaemon[] daemons)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (daemons.FirstOrDefault(d => d.Daemon.Process.HasExited) is { } gone)
                throw new InvalidOperationException($"A daemon exited ({gone.Daemon.Process.ExitCode}): {gone.Output}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"The daemons did not get there in time:\n{string.Join("\n----\n", daemons.Select(d => d.Output))}");
            await Task.Delay(100);
        }
    }
}
