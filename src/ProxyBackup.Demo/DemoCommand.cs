using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ProxyBackup.Catalog;
using ProxyBackup.Cli;
using ProxyBackup.Devices;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Simulator;

namespace ProxyBackup.Demo;

/// <summary>
/// `proxybackup-demo` (scripts/demo): the main job on the embedded default. Starts the OpenNebula simulator with a
/// seeded cloud and a temporary repository, protects a VM, changes its disks, backs up again,
/// restores to a new VM, and shows that the restored disks equal the source at backup time.
/// </summary>
internal static class DemoCommand
{
    public static RootCommand Build()
    {
        var json = new Option<bool>("--json") { Description = "Print the outcome as one JSON object." };
        var diskMb = new Option<int>("--disk-mb") { DefaultValueFactory = _ => 256, Description = "Size of the demo VM's main disk, MiB." };
        var keep = new Option<string?>("--keep") { Description = "Keep the simulator data, repository and catalog in this directory (default: a temporary one, removed)." };
        var vmName = new Option<string>("--vm") { DefaultValueFactory = _ => "web-01", Description = "The demo VM to protect (web-01, db-01, dev-01)." };
        var c = new RootCommand("proxybackup-demo: the whole job against the embedded OpenNebula simulator: backup, change, incremental, restore, verify.") { json, diskMb, keep, vmName };
        c.SetAction(async (p, ct) => await RunAsync(p.GetValue(json), p.GetValue(diskMb), p.GetValue(keep), p.GetValue(vmName)!, ct).ConfigureAwait(false));
        return c;
    }

    private sealed record DiskOutcome(int Disk, string SourceSha256, string RestoredSha256, bool Equal, long FullBytesRead, long FullBytesStored, long IncrementalBytesRead, long IncrementalBytesChanged, long IncrementalBytesStored);

    private static async Task<int> RunAsync(bool json, int diskMb, string? keep, string vmName, CancellationToken ct)
    {
        var root = keep ?? Directory.CreateTempSubdirectory("proxybackup-demo-").FullName;
        Directory.CreateDirectory(root);
        void Say(string s) { if (!json) Console.WriteLine(s); }
        try
        {
            Say($"Starting the OpenNebula simulator (data in {root}) ...");
            await using var sim = SimServer.Start(new SimOptions { DataDirectory = Path.Combine(root, "cloud"), OperationTime = TimeSpan.FromMilliseconds(100) }, IPAddress.Loopback, 0, Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12)));
            sim.Cloud.SeedDemo(diskMb);
            await sim.Cloud.WaitIdleAsync(TimeSpan.FromMinutes(2)).ConfigureAwait(false);
            using var client = new OneClient(new OneClientOptions { Endpoint = sim.Endpoint, Credentials = new OneCredentials("oneadmin", sim.Cloud.Password("oneadmin")!) });
            var proxy = (await client.VmPoolAsync(ct: ct).ConfigureAwait(false)).Single(v => v.Name == "proxybackup");
            var devices = sim.Cloud.Devices.DirectoryOf(proxy.Id);
            Say($"  {sim.Endpoint}, proxy disks as {(sim.Cloud.Devices.UsesLoopDevices ? "loop devices" : "files")} in {devices}");
            await ProxyIdentity.VerifyAsync(client, proxy.Id, ct).ConfigureAwait(false);
            var target = (await client.VmPoolAsync(ct: ct).ConfigureAwait(false)).FirstOrDefault(v => v.Name == vmName) ?? throw new CliException($"The demo cloud has no VM '{vmName}'.");
            var vm = await client.VmInfoAsync(target.Id, ct).ConfigureAwait(false);

            var repoPath = Path.Combine(root, "repository");
            var repo = Directory.Exists(repoPath) ? BackupRepository.Open(repoPath, null) : BackupRepository.Create(repoPath, new RepositoryCreateOptions());
            var catalog = new SqlCatalog(Path.Combine(root, "catalog.db"));
            ILogger log = NullLogger.Instance;
            var steps = new CloudSteps(client, catalog, new DeviceLocator(new DeviceLocatorOptions { DevicesDirectory = devices }),
                new EngineOptions { ProxyVmId = proxy.Id, MaxPoll = TimeSpan.FromMilliseconds(500), DetachRetryDelay = TimeSpan.FromMilliseconds(200) }, log);
            var cleaner = new CloudCleaner(steps, catalog, log);
            var backup = new BackupJob(steps, cleaner, catalog, catalog, repo, log, catalog);
            var restore = new RestoreJob(steps, cleaner, catalog, repo, log, catalog);

            Say($"Protecting VM {vm.Id} ({vm.Name}): full backup of {vm.Disks.Count(d => !d.IsVolatile)} disk(s) ...");
            var full = await Progress(json, "full backup", pr => backup.RunAsync(vm.Id, new BackupOptions(), pr, ct)).ConfigureAwait(false);
            Say($"  restore point {full.RestorePoint.Id}: read {CliFormat.Bytes(full.Disks.Sum(d => d.Stats.Read))}, stored {CliFormat.Bytes(full.Disks.Sum(d => d.Stats.NewStored))}");

            Say("The guest writes: 8 random blocks of 4 KiB at random places on each disk ...");
            foreach (var d in full.Disks) sim.Cloud.MutateDisk(vm.Id, d.DiskId, 8, 4096, seed: d.DiskId + 1);
            var sums = full.Disks.ToDictionary(d => d.DiskId, d => Sha256(sim.Cloud.DiskContentPath(vm.Id, d.DiskId)));

            Say("Incremental backup ...");
            var incr = await Progress(json, "incremental backup", pr => backup.RunAsync(vm.Id, new BackupOptions(), pr, ct)).ConfigureAwait(false);
            Say($"  restore point {incr.RestorePoint.Id}: changed {CliFormat.Bytes(incr.Disks.Sum(d => d.Stats.Changed))}, stored {CliFormat.Bytes(incr.Disks.Sum(d => d.Stats.NewStored))} new");

            Say("Restoring the incremental restore point as a new VM ...");
            var restored = await Progress(json, "restore", pr => restore.RestoreVmAsync(incr.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1, Name = $"{vm.Name}-restored" }, pr, ct)).ConfigureAwait(false);
            var outcomes = incr.Disks.Select(d =>
            {
                var fullDisk = full.Disks.Single(f => f.DiskId == d.DiskId);
                var restoredSum = Sha256(sim.Cloud.DiskContentPath(restored.VmId!.Value, d.DiskId));
                return new DiskOutcome(d.DiskId, sums[d.DiskId], restoredSum, sums[d.DiskId] == restoredSum, fullDisk.Stats.Read, fullDisk.Stats.NewStored, d.Stats.Read, d.Stats.Changed, d.Stats.NewStored);
            }).ToList();
            var verify = await repo.VerifyAsync(readData: true, ct: ct).ConfigureAwait(false);
            var leftovers = await LeftoversAsync(client, proxy.Id, ct).ConfigureAwait(false);
            var ok = outcomes.All(o => o.Equal) && verify.Ok && leftovers.Count == 0;
            if (json)
                CliFormat.PrintJson(new
                {
                    ok, vm = new { vm.Id, vm.Name }, restoredVm = restored.VmId, fullRestorePoint = full.RestorePoint.Id, incrementalRestorePoint = incr.RestorePoint.Id,
                    disks = outcomes, verify = new { verify.Ok, verify.RestorePointsChecked, verify.ChunksChecked }, leftoverObjects = leftovers.Count, leftovers,
                });
            else
            {
                Console.WriteLine($"Restored as VM {restored.VmId} ({vm.Name}-restored), RUNNING.");
                foreach (var o in outcomes)
                    Console.WriteLine($"  disk {o.Disk}: source {o.SourceSha256[..16]}…  restored {o.RestoredSha256[..16]}…  {(o.Equal ? "identical" : "DIFFERENT")}; incremental moved {CliFormat.Bytes(o.IncrementalBytesStored)} (of {CliFormat.Bytes(o.IncrementalBytesRead)} read)");
                Console.WriteLine($"Repository verified ({verify.ChunksChecked} chunks read): {(verify.Ok ? "no damage" : "DAMAGED")}.");
                Console.WriteLine($"Objects left on the cloud by the jobs: {leftovers.Count}{(leftovers.Count > 0 ? " (" + string.Join(", ", leftovers) + ")" : "")}.");
                Console.WriteLine(ok ? "Demo succeeded." : "Demo FAILED.");
            }
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
            return ok ? 0 : 1;
        }
        finally
        {
            if (keep is null)
                try { Directory.Delete(root, recursive: true); }
                catch (IOException) { }
        }
    }

    private static Task<T> Progress<T>(bool json, string what, Func<IProgress<TransferProgress>?, Task<T>> work) =>
        json ? work(null) : ProgressDisplay.RunAsync(what, p => work(p));

    /// <summary>Disk snapshots, templates, extra proxy disks and unused pb- images: what a job must never leave.</summary>
    private static async Task<List<string>> LeftoversAsync(OneClient client, int proxyId, CancellationToken ct)
    {
        var list = new List<string>();
        foreach (var v in await client.VmPoolExtendedAsync(ct: ct).ConfigureAwait(false))
            foreach (var s in v.Snapshots.SelectMany(x => x.Snapshots)) list.Add($"snapshot {s.Id} of VM {v.Id}");
        var proxy = await client.VmInfoAsync(proxyId, ct).ConfigureAwait(false);
        list.AddRange(proxy.Disks.Where(d => d.Image?.StartsWith("pb-", StringComparison.Ordinal) == true).Select(d => $"disk {d.DiskId} attached to the proxy"));
        list.AddRange((await client.ImagePoolAsync(ct: ct).ConfigureAwait(false)).Where(i => i.Name.StartsWith("pb-", StringComparison.Ordinal) && i.RunningVms == 0).Select(i => $"image {i.Id} {i.Name}"));
        list.AddRange((await client.TemplatePoolAsync(ct: ct).ConfigureAwait(false)).Select(t => $"template {t.Id} {t.Name}"));
        return list;
    }

    private static string Sha256(string path)
    {
        using var f = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return Convert.ToHexStringLower(SHA256.HashData(f));
    }
}
