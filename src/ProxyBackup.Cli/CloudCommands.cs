using System.CommandLine;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;

namespace ProxyBackup.Cli;

/// <summary>`proxybackup vm ...`, `snapshot ...`, `cleanup`: the engine on a real (or simulated) cloud, onevm-style.</summary>
internal static class CloudCommands
{
    internal static readonly Option<bool> Json = new("--json") { Description = "Print the result as JSON." };
    internal static readonly Argument<string> Vm = new("vm") { Description = "VM ID or name." };

    public static IEnumerable<Command> Build() => [VmCommand(), SnapshotCommand(), Cleanup(), Jobs(), Drill()];

    /// <summary>`proxybackup drill VM`: a restore rehearsed in a sandbox and removed (docs/operations.md, "Restore drills").</summary>
    private static Command Drill()
    {
        var point = new Option<string>("--point") { DefaultValueFactory = _ => "latest", Description = "Restore point id, or 'latest'." };
        var imageDs = new Option<int>("--image-ds") { DefaultValueFactory = _ => 1, Description = "Image datastore for the sandbox's disks." };
        var systemDs = new Option<int?>("--system-ds") { Description = "System datastore for the sandbox VM." };
        var check = new Option<string?>("--check") { Description = "Run by /bin/sh once the sandbox VM runs (PROXYBACKUP_VM_ID, _VM_NAME, _DRILLED_VM_ID); a non-zero exit fails the drill." };
        var checkTimeout = new Option<int>("--check-timeout") { DefaultValueFactory = _ => 600, Description = "Seconds the check may run." };
        var c = new Command("drill", "Rehearse a VM's restore: its restore point restored into a sandbox VM (no NICs), the disks read back and compared, the VM run and checked, its recovery time recorded, everything removed.")
            { Vm, point, imageDs, systemDs, check, checkTimeout, Json };
        foreach (var o in EngineHost.Options) c.Options.Add(o);
        c.SetAction(async (p, ct) =>
        {
            var repo = RepositoryCommands.Open(p);
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            var id = await EngineHost.ResolveVmAsync(host.Client, p.GetValue(Vm)!, ct, (repo, host.Backup.Sources)).ConfigureAwait(false);
            var source = host.Backup.Sources.Of(id);
            var pt = p.GetValue(point) == "latest" ? repo.Latest(source) ?? throw new CliException($"VM {id} has no restore point to drill.") : repo.LoadIndex(source, p.GetValue(point)!);
            await host.Cleaner.CleanBeforeJobsAsync(ct).ConfigureAwait(false);
            var result = await ProgressDisplay.RunAsync("drill", progress => host.Restore.DrillAsync(pt, new DrillOptions
            {
                ImageDatastoreId = p.GetValue(imageDs), SystemDatastoreId = p.GetValue(systemDs), CheckCommand = p.GetValue(check), CheckTimeoutSeconds = p.GetValue(checkTimeout),
            }, progress, ct)).ConfigureAwait(false);
            if (p.GetValue(Json)) CliFormat.PrintJson(result);
            else
            {
                Console.WriteLine(result.Succeeded
                    ? $"Drill of VM {id} from restore point {pt.Id} succeeded: recovery time {result.RecoveryTime!.Value.TotalSeconds:0.0} s (restored, read back and matched, running{(p.GetValue(check) is null ? "" : ", checked")})."
                    : $"Drill of VM {id} from restore point {pt.Id} FAILED: {result.Failure}");
                Console.WriteLine(result.LeftNothing ? "The sandbox is removed." : $"Left for the next cleanup pass: {string.Join("; ", result.Left)}");
                Console.WriteLine($"Its log: proxybackup jobs log {result.JobId}");
            }
            return result.Succeeded && result.LeftNothing ? 0 : 1;
        });
        return c;
    }

    private static Command Cancel()
    {
        var c = new Command("cancel", "Stop a VM's running backup in the daemon at its next safe point (it cleans up).") { Vm };
        c.SetAction(async (p, ct) =>
        {
            if (DaemonSocket(p) is not { } socket) throw new CliException("No appliance configuration: the daemon is not set up here.");
            using var client = EngineHost.Connect(p);
            var id = await EngineHost.ResolveVmAsync(client, p.GetValue(Vm)!, ct).ConfigureAwait(false);
            var answer = await DaemonApi.AskAsync(socket.Path, new { op = "cancel", vm = id }, ct).ConfigureAwait(false)
                ?? throw new CliException("The daemon is not running.");
            Console.WriteLine(answer["cancelled"]?.GetValue<bool>() == true ? $"The backup of VM {id} is being stopped." : $"VM {id} has no running backup.");
            return 0;
        });
        return c;
    }

    private static Command Jobs()
    {
        var last = new Option<int>("--last") { DefaultValueFactory = _ => 20, Description = "How many recent jobs." };
        var c = new Command("jobs", "Recent backup and restore jobs from the catalog, newest first.") { last, Json };
        var jobId = new Argument<string>("job");
        var log = new Command("log", "The log of one job.") { jobId };
        log.SetAction(p =>
        {
            var lines = EngineHost.CatalogOf(p).Open().LogOf(p.GetValue(jobId)!);
            if (lines.Count == 0) throw new CliException($"No log for job '{p.GetValue(jobId)}'.");
            foreach (var (time, level, message) in lines) Console.WriteLine($"{time:yyyy-MM-dd HH:mm:ss}Z {level,-7} {message}");
            return 0;
        });
        c.Subcommands.Add(log);
        c.Options.Add(EngineHost.Catalog);
        c.Options.Add(DaemonCommand.ConfigFile);
        c.SetAction(p =>
        {
            var section = EngineHost.CatalogOf(p);
            if (!section.Exists) throw new CliException($"No catalog at {section.Path} (no job has run yet, or give --catalog).");
            var catalog = section.Open();
            catalog.MarkInterrupted();
            var jobs = catalog.Recent(p.GetValue(last));
            if (p.GetValue(Json)) { CliFormat.PrintJson(jobs); return 0; }
            foreach (var j in jobs)
                Console.WriteLine($"{j.Id}  {j.Kind,-8} VM {j.VmId,-5} {j.State,-10} {j.Started:yyyy-MM-dd HH:mm:ss}Z  {(j.Ended is { } e ? $"{(e - j.Started).TotalSeconds,7:0.0} s" : "running"),10}  read {CliFormat.Bytes(j.BytesRead),10}  stored {CliFormat.Bytes(j.BytesStored),10}  {j.RestorePoint}{(j.Error is null ? "" : "  " + j.Error)}");
            if (jobs.Count == 0) Console.WriteLine("No jobs recorded.");
            return 0;
        });
        return c;
    }

    private static Command VmCommand()
    {
        var vm = new Command("vm", "Protected VMs: list, backup, points (restore points), restore.");
        foreach (var o in EngineHost.Options) vm.Options.Add(o);
        vm.Subcommands.Add(List());
        vm.Subcommands.Add(Backup());
        vm.Subcommands.Add(Points());
        vm.Subcommands.Add(Restore());
        vm.Subcommands.Add(Cancel());
        return vm;
    }

    private static Command List()
    {
        var all = new Option<bool>("--all") { Description = "Also the VMs deleted from OpenNebula that still have restore points (restorable by ID or by their former name)." };
        var c = new Command("list", "VMs with the policies that protect them, their last restore point and their last backup's outcome (restore points only where a repository is named or configured).") { all, Json };
        c.SetAction(async (p, ct) =>
        {
            using var client = EngineHost.Connect(p);
            var repo = RepositoryCommands.OpenIfNamed(p);
            var vms = await client.VmPoolAsync(ct: ct).ConfigureAwait(false);
            var backedUp = repo is null ? [] : EngineHost.BackedUpVms(repo, EngineHost.SourcesOf(p)).ToDictionary(v => v.VmId);
            // Read, never created, by a listing: a proxy without a catalog yet has no policies and no jobs.
            var section = EngineHost.CatalogOf(p);
            var catalog = section.Exists ? section.Open() : null;
            var policies = catalog?.Policies().Where(ProtectionPolicyRules.Runs).ToList() ?? [];
            var lastBackups = catalog?.LastJobs("backup") ?? new Dictionary<int, ProxyBackup.Contracts.JobRecord>();
            string[] ProtectedBy(VirtualMachine vm) => [.. policies.Where(x => x.Selection.Matches(vm)).Select(x => x.Name)];
            // A VM deleted from OpenNebula is listed (with --all) by its restore points, under the name it last had.
            var deleted = backedUp.Values.Where(b => vms.All(v => v.Id != b.VmId)).ToList();
            var rows = vms.Select(v => (v.Id, v.Name, State: v.StateName, Policies: ProtectedBy(v), Last: backedUp.TryGetValue(v.Id, out var b) ? (RestorePoint?)b.Latest : null))
                .Concat((p.GetValue(all) ? deleted : []).Select(b => (Id: b.VmId, Name: b.Latest.Tags.GetValueOrDefault("vm_name") ?? "", State: "(deleted)", Policies: Array.Empty<string>(), Last: (RestorePoint?)b.Latest)))
                .OrderBy(r => r.Id)
                .Select(r => (r.Id, r.Name, r.State, r.Policies, r.Last, Job: lastBackups.GetValueOrDefault(r.Id)))
                .ToList();
            if (repo is null) Console.Error.WriteLine("proxybackup: no repository named or configured: restore points are not shown (--repo PATH).");
            if (!p.GetValue(all) && deleted.Count > 0) Console.Error.WriteLine($"proxybackup: {deleted.Count} VM(s) deleted from OpenNebula still have restore points; --all lists them.");
            if (p.GetValue(Json))
            {
                CliFormat.PrintJson(rows.Select(r => new
                {
                    r.Id, r.Name, r.State, ProtectedBy = r.Policies,
                    LastRestorePoint = r.Last?.Id, LastTime = r.Last?.Time, LastBackup = r.Job?.State, LastBackupEnded = r.Job?.Ended, LastError = r.Job?.Error,
                }));
                return 0;
            }
            Console.WriteLine($"{"ID",5}  {"NAME",-20} {"STATE",-14} {"PROTECTED BY",-16} {"LAST RESTORE POINT",-38} LAST BACKUP");
            foreach (var (vmId, vmName, state, policyNames, last, job) in rows)
                Console.WriteLine($"{vmId,5}  {vmName,-20} {state,-14} {(policyNames.Length == 0 ? "-" : string.Join(',', policyNames)),-16} " +
                    $"{(last is null ? repo is null ? "?" : "never" : $"{last.Time:yyyy-MM-dd HH:mm}Z {last.Id}"),-38} {LastBackup(job)}");
            return 0;
        });
        return c;
    }

    /// <summary>A backup job's outcome in one cell: its state, and a failure's reason cut to fit.</summary>
    private static string LastBackup(ProxyBackup.Contracts.JobRecord? job) => job switch
    {
        null => "-",
        { Error: { Length: > 0 } error } => $"{job.State}: {(error.Length > 60 ? error[..57] + "..." : error)}",
        _ => job.State,
    };

    private static Command Backup()
    {
        var vms = new Argument<string[]>("vms") { Description = "VM IDs or names.", Arity = ArgumentArity.OneOrMore };
        var full = new Option<bool>("--full") { Description = "Do not compare with the previous restore point." };
        var exclude = new Option<int[]>("--exclude-disk") { Description = "DISK_ID not to back up (with one VM); repeatable." };
        var parallel = new Option<int>("--parallel") { DefaultValueFactory = _ => 1, Description = "How many VMs are snapshotted and read at once; one whose disks are read and snapshots deleted makes room for the next while it tidies up (disks are hot-plugged into the proxy one at a time)." };
        var local = new Option<bool>("--local") { Description = "Run in this process even when the daemon is running." };
        var c = new Command("backup", "Back up VMs now (incremental against each VM's latest restore point unless --full); handed to the daemon when it runs, which takes the snapshot set as the VM's policy says.") { vms, full, exclude, parallel, local, Json };
        foreach (var o in ConsistencyOptions.All) c.Options.Add(o);
        c.SetAction(async (p, ct) =>
        {
            if (!p.GetValue(local) && p.GetValue(exclude) is not { Length: > 0 } && !ConsistencyOptions.Given(p) && DaemonSocket(p) is { } socket
                && await DaemonApi.AskAsync(socket.Path, new { op = "status" }, ct).ConfigureAwait(false) is not null)
                return await ThroughDaemonAsync(p, socket.Path, socket.Catalog, p.GetValue(vms)!, p.GetValue(full), ct).ConfigureAwait(false);
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            await host.Cleaner.CleanBeforeJobsAsync(ct).ConfigureAwait(false);
            var ids = await EngineHost.ResolveVmsAsync(host.Client, p.GetValue(vms)!, ct).ConfigureAwait(false);
            if (ids.Count > 1 && p.GetValue(exclude) is { Length: > 0 }) throw new CliException("--exclude-disk applies to one VM at a time.");
            if (p.GetValue(parallel) < 1) throw new CliException("--parallel must be at least 1.");
            var options = new BackupOptions { Full = p.GetValue(full), ExcludeDisks = (p.GetValue(exclude) ?? []).ToHashSet(), Consistency = ConsistencyOptions.From(p) };
            var results = new System.Collections.Concurrent.ConcurrentBag<BackupResult>();
            var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
            async Task One(int id, IProgress<TransferProgress>? progress, Action? disksRead = null)
            {
                try { results.Add(await host.Backup.RunAsync(id, options with { DisksRead = disksRead }, progress, ct).ConfigureAwait(false)); }
                catch (Exception e) when (ids.Count > 1 && !(e is OperationCanceledException && ct.IsCancellationRequested)) { failures.Add($"VM {id}: {e.Message}"); }
            }
            if (ids.Count == 1)
                await ProgressDisplay.RunAsync($"backup VM {ids[0]}", async progress => { await One(ids[0], progress).ConfigureAwait(false); return 0; }).ConfigureAwait(false);
            else
            {
                // A VM takes a place until its disks are read and its snapshots deleted
                // (BackupOptions.DisksRead), not until its job ends; the places are handed out in the
                // order the VMs were named.
                using var places = new SemaphoreSlim(p.GetValue(parallel));
                await Task.WhenAll(ids.Select(async id =>
                {
                    await places.WaitAsync(ct).ConfigureAwait(false);
                    var left = 0;
                    void Leave() { if (Interlocked.Exchange(ref left, 1) == 0) places.Release(); }
                    try { await One(id, null, Leave).ConfigureAwait(false); }
                    finally { Leave(); }
                })).ConfigureAwait(false);
            }
            if (p.GetValue(Json)) CliFormat.PrintJson(new { results = results.OrderBy(r => r.VmId), failures });
            else
            {
                foreach (var result in results.OrderBy(r => r.VmId))
                {
                    Console.WriteLine($"VM {result.VmId} ({result.VmName}): restore point {result.RestorePoint.Id} ({result.RestorePoint.Tags["kind"]})");
                    if (result.Paused is { } paused) Console.WriteLine($"  the VM was paused {paused.TotalSeconds:0.0} s for a consistent snapshot set (suspend)");
                    foreach (var d in result.Disks)
                        Console.WriteLine($"  disk {d.DiskId}: read {CliFormat.Bytes(d.Stats.Read)}, changed {CliFormat.Bytes(d.Stats.Changed)}, stored {CliFormat.Bytes(d.Stats.NewStored)} new, {d.Stats.Seconds:0.0} s");
                    foreach (var w in result.Warnings) Console.WriteLine($"  note: {w}");
                }
                foreach (var f in failures) Console.Error.WriteLine($"proxybackup: {f}");
            }
            return failures.IsEmpty ? 0 : 1;
        });
        return c;
    }

    /// <summary>The daemon's socket and catalog, when the appliance is configured.</summary>
    private static (string Path, AppConfig.CatalogSection Catalog)? DaemonSocket(ParseResult p)
    {
        var path = p.GetValue(DaemonCommand.ConfigFile)!;
        if (!File.Exists(path)) return null;
        var config = AppConfig.Load(path);
        return (config.Daemon.Socket, config.Catalog);
    }

    /// <summary>Hands the backups to the running daemon, shows their progress, and reports them from the catalog.</summary>
    private static async Task<int> ThroughDaemonAsync(ParseResult p, string socket, AppConfig.CatalogSection catalog, string[] vms, bool full, CancellationToken ct)
    {
        using var client = EngineHost.Connect(p);
        var ids = await EngineHost.ResolveVmsAsync(client, vms, ct).ConfigureAwait(false);
        var since = DateTimeOffset.UtcNow.AddSeconds(-1);
        foreach (var id in ids)
        {
            var answer = await DaemonApi.AskAsync(socket, new { op = "backup", vm = id, full }, ct).ConfigureAwait(false);
            if (answer?["ok"]?.GetValue<bool>() != true) throw new CliException($"The daemon refused the backup of VM {id}: {answer?["error"]}");
            Console.Error.WriteLine($"VM {id}: handed to the daemon{(answer["queued"]!.GetValue<bool>() ? "" : " (it was already queued or running)")}.");
        }
        var last = "";
        while (true)
        {
            var status = await DaemonApi.AskAsync(socket, new { op = "status" }, ct).ConfigureAwait(false) ?? throw new CliException("The daemon stopped answering.");
            var running = status["running"]!.AsArray().Where(r => ids.Contains(r!["vm"]!.GetValue<int>())).ToList();
            var waiting = status["waiting"]!.AsArray().Select(w => w!.GetValue<int>()).Where(ids.Contains).ToList();
            if (running.Count == 0 && waiting.Count == 0) break;
            var line = string.Join("; ", running.Select(r => CliFormat.RunningJob(r!)).Concat(waiting.Select(w => $"VM {w}: waiting")));
            if (line != last) Console.Error.WriteLine(last = line);
            await Task.Delay(500, ct).ConfigureAwait(false);
        }
        var jobs = catalog.Open().Recent(100).Where(j => ids.Contains(j.VmId) && j.Started >= since).ToList();
        if (p.GetValue(Json)) CliFormat.PrintJson(jobs);
        else
            foreach (var id in ids)
            {
                var job = jobs.Where(j => j.VmId == id).OrderByDescending(j => j.Started).FirstOrDefault();
                Console.WriteLine(job switch
                {
                    null => $"VM {id}: no job was recorded.",
                    { State: "succeeded" } => $"VM {id}: restore point {job.RestorePoint} (job {job.Id}, read {CliFormat.Bytes(job.BytesRead)}, stored {CliFormat.Bytes(job.BytesStored)} new)",
                    _ => $"VM {id}: {job.State}: {job.Error}",
                });
            }
        return jobs.Count(j => j.State == "succeeded") >= ids.Count ? 0 : 1;
    }

    private static Command Points()
    {
        var c = new Command("points", "Restore points of a VM, oldest first.") { Vm, Json };
        c.SetAction(async (p, ct) =>
        {
            using var client = EngineHost.Connect(p);
            var repo = RepositoryCommands.Open(p);
            var sources = EngineHost.SourcesOf(p);
            var id = await EngineHost.ResolveVmAsync(client, p.GetValue(Vm)!, ct, (repo, sources)).ConfigureAwait(false);
            var points = RepositoryCommands.ReadablePoints(repo, sources.Of(id));
            if (p.GetValue(Json)) { CliFormat.PrintJson(points); return 0; }
            foreach (var pt in points)
            {
                var verified = repo.LastVerification(pt) is { } v ? $"  verified {(v.Ok ? "ok" : "DAMAGED")} {v.Time:yyyy-MM-dd} ({v.Data})" : "  never verified";
                Console.WriteLine($"{pt.Id}  {pt.Time:yyyy-MM-dd HH:mm:ss}Z  {pt.Tags.GetValueOrDefault("kind"),-11}  {string.Join(", ", pt.Disks.Select(d => $"disk {d.Disk} {CliFormat.Bytes(d.Size)}"))}{verified}");
            }
            if (points.Count == 0) Console.WriteLine($"VM {id} has no restore point.");
            return 0;
        });
        return c;
    }

    /// <summary>The one --disk of a restore as an image or to a file; several are for --in-place only.</summary>
    private static int? OneDisk(int[]? disks) => disks switch
    {
        null or [] => null,
        [var one] => one,
        _ => throw new CliException("--disk is given once, except with --in-place."),
    };

    private static Command Restore()
    {
        var point = new Option<string>("--point") { DefaultValueFactory = _ => "latest", Description = "Restore point id, or 'latest'." };
        var imageDs = new Option<int>("--image-ds") { DefaultValueFactory = _ => 1, Description = "Image datastore for the restored disks." };
        var systemDs = new Option<int?>("--system-ds") { Description = "System datastore for the new VM." };
        var name = new Option<string?>("--name") { Description = "Name of the new VM (or template), and its images' base name: NAME-disk-N." };
        var templateOnly = new Option<bool>("--template-only") { Description = "Create the VM template with the restored disks and stop there (no VM)." };
        var inPlace = new Option<bool>("--in-place") { Description = "Put the point's content back into the VM itself: powered off, each disk (all, or --disk) replaced, the VM back to the state it had (docs/operations.md, \"In-place restore\")." };
        var hard = new Option<bool>("--hard") { Description = "With --in-place: power a running VM off hard (the guest is not asked)." };
        var verify = new Option<bool>("--verify") { Description = "Read each restored disk back from the datastore and compare it with the restore point before the VM is made." };
        var owner = new Option<RestoreOwner>("--owner") { DefaultValueFactory = _ => RestoreOwner.Original, Description = "Original: give the VM, its images and template to the original VM's owner and group (when the appliance's account may; else one warning). Appliance: keep them the appliance's." };
        var nics = new Option<NicMode>("--nics") { DefaultValueFactory = _ => NicMode.NoIp, Description = "Keep, NoIp (default: same networks, new addresses) or NoNic." };
        var disk = new Option<int[]>("--disk") { Description = "Restore only this DISK_ID: as a new image, or to a file with --to; with --in-place, repeatable (default: every disk)." };
        var to = new Option<string?>("--to") { Description = "With --disk: write to this file instead of the cloud." };
        var format = new Option<DiskFormat>("--format") { DefaultValueFactory = _ => DiskFormat.Raw, Description = "With --to: raw or qcow2." };
        var deployTimeout = new Option<int>("--deploy-timeout") { DefaultValueFactory = _ => 30, Description = "Minutes the new VM may wait for the scheduler and its boot; after that it is left PENDING and the restore says so." };
        deployTimeout.Validators.Add(r => { if (r.GetValueOrDefault<int>() is < 1 or > 1440) r.AddError("--deploy-timeout is in minutes, from 1 to 1440."); });
        var c = new Command("restore", "Restore a VM (new VM from its disks and saved template), a disk as an image, or a disk to a file.") { Vm, point, imageDs, systemDs, name, nics, disk, to, format, deployTimeout, templateOnly, owner, verify, inPlace, hard, Json };
        c.SetAction(async (p, ct) =>
        {
            var repo = RepositoryCommands.Open(p);
            using var client = EngineHost.Connect(p);
            var sources = EngineHost.SourcesOf(p);
            var id = await EngineHost.ResolveVmAsync(client, p.GetValue(Vm)!, ct, (repo, sources)).ConfigureAwait(false);
            var source = sources.Of(id);
            var pt = p.GetValue(point) == "latest" ? repo.Latest(source) ?? throw new CliException($"VM {id} has no restore point.") : repo.LoadIndex(source, p.GetValue(point)!);
            if (p.GetValue(to) is { } file)
            {
                var d = OneDisk(p.GetValue(disk)) ?? throw new CliException("--to needs --disk DISK_ID.");
                await ProgressDisplay.RunAsync("export", async progress => { await repo.ExportAsync(pt, d.ToString(System.Globalization.CultureInfo.InvariantCulture), file, p.GetValue(format), progress, ct).ConfigureAwait(false); return 0; }).ConfigureAwait(false);
                Console.WriteLine($"Disk {d} of {pt.Id} written to {file}.");
                return 0;
            }
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            await host.Cleaner.CleanBeforeJobsAsync(ct).ConfigureAwait(false);
            RestoreResult result;
            var originalOwner = p.GetValue(owner) == RestoreOwner.Original;
            if (p.GetValue(inPlace))
            {
                if (p.GetValue(templateOnly) || p.GetValue(name) is not null) throw new CliException("--in-place restores into the VM itself: leave out --template-only and --name.");
                result = await ProgressDisplay.RunAsync("restore in place", progress => host.Restore.RestoreInPlaceAsync(pt, new InPlaceOptions
                {
                    Disks = p.GetValue(disk) is { Length: > 0 } chosen ? chosen.ToHashSet() : null, HardPowerOff = p.GetValue(hard), ImageDatastoreId = p.GetValue(imageDs), VerifyDisks = p.GetValue(verify),
                }, progress, ct)).ConfigureAwait(false);
            }
            else if (OneDisk(p.GetValue(disk)) is { } only)
            {
                if (p.GetValue(templateOnly)) throw new CliException("--template-only restores a whole VM's disks; leave out --disk.");
                result = await ProgressDisplay.RunAsync("restore disk", progress => host.Restore.RestoreDiskAsImageAsync(pt, only, p.GetValue(imageDs), progress, ct, p.GetValue(name), originalOwner)).ConfigureAwait(false);
            }
            else
                result = await ProgressDisplay.RunAsync("restore VM", progress => host.Restore.RestoreVmAsync(pt, new RestoreVmOptions
                {
                    ImageDatastoreId = p.GetValue(imageDs), SystemDatastoreId = p.GetValue(systemDs), Name = p.GetValue(name), Nics = p.GetValue(nics),
                    DeployTimeout = TimeSpan.FromMinutes(p.GetValue(deployTimeout)), TemplateOnly = p.GetValue(templateOnly), OriginalOwner = originalOwner, VerifyDisks = p.GetValue(verify),
                }, progress, ct)).ConfigureAwait(false);
            if (p.GetValue(Json)) { CliFormat.PrintJson(result); return 0; }
            Console.WriteLine(p.GetValue(inPlace) ? $"Restored {pt.Id} into VM {result.VmId} in place: disk(s) {string.Join(", ", result.Images.Keys)} hold the point's content; the VM is back in the state it had."
                : result.VmId is { } vmId ? $"Restored {pt.Id} as VM {vmId}; disks in images {string.Join(", ", result.Images.Values)}."
                : result.TemplateId is { } templateId ? $"Restored {pt.Id} as template {templateId}; disks in images {string.Join(", ", result.Images.Values)}. Instantiate it when you are ready (onetemplate instantiate {templateId})."
                : $"Restored disk as image {string.Join(", ", result.Images.Values)}.");
            foreach (var warning in result.Warnings ?? []) Console.WriteLine($"  warning: {warning}");
            return 0;
        });
        return c;
    }

    private static Command SnapshotCommand()
    {
        var s = new Command("snapshot", "Disk snapshots of a VM: list, create, revert, delete.");
        foreach (var o in EngineHost.Options) s.Options.Add(o);
        var diskOpt = new Option<int>("--disk") { Required = true };
        var snapOpt = new Option<int>("--snapshot") { Required = true };
        var list = new Command("list", "List a VM's disk snapshots.") { Vm, Json };
        list.SetAction(async (p, ct) =>
        {
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            var id = await EngineHost.ResolveVmAsync(host.Client, p.GetValue(Vm)!, ct).ConfigureAwait(false);
            var snaps = await host.Snapshots.ListAsync(id, ct).ConfigureAwait(false);
            if (p.GetValue(Json)) { CliFormat.PrintJson(snaps.Select(x => new { x.DiskId, x.Snapshot.Id, x.Snapshot.Name, Date = DateTimeOffset.FromUnixTimeSeconds(x.Snapshot.Date), x.Snapshot.Active, x.Snapshot.Parent })); return 0; }
            foreach (var (disk, snap) in snaps)
                Console.WriteLine($"disk {disk}  snapshot {snap.Id,3}  {DateTimeOffset.FromUnixTimeSeconds(snap.Date):yyyy-MM-dd HH:mm}Z  {(snap.Active ? "active" : "      ")}  {snap.Name}");
            if (snaps.Count == 0) Console.WriteLine($"VM {id} has no disk snapshot.");
            return 0;
        });
        var nameOpt = new Option<string>("--name") { DefaultValueFactory = _ => "" };
        var create = new Command("create", "Take a disk snapshot.") { Vm, diskOpt, nameOpt };
        create.SetAction(async (p, ct) =>
        {
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            var id = await EngineHost.ResolveVmAsync(host.Client, p.GetValue(Vm)!, ct).ConfigureAwait(false);
            Console.WriteLine($"Snapshot {await host.Snapshots.CreateAsync(id, p.GetValue(diskOpt), p.GetValue(nameOpt)!, ct).ConfigureAwait(false)} of disk {p.GetValue(diskOpt)} taken.");
            return 0;
        });
        var poweroff = new Option<bool>("--poweroff") { Description = "Power a running VM off for the revert (OpenNebula 6.8+ needs POWEROFF), then resume it." };
        var hard = new Option<bool>("--hard") { Description = "With --poweroff: power off hard (the guest is not asked)." };
        var revert = new Command("revert", "Revert a disk to a snapshot.") { Vm, diskOpt, snapOpt, poweroff, hard };
        revert.SetAction(async (p, ct) =>
        {
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            var id = await EngineHost.ResolveVmAsync(host.Client, p.GetValue(Vm)!, ct).ConfigureAwait(false);
            await host.Snapshots.RevertAsync(id, new Dictionary<int, int> { [p.GetValue(diskOpt)] = p.GetValue(snapOpt) }, p.GetValue(poweroff), p.GetValue(hard), ct).ConfigureAwait(false);
            Console.WriteLine($"Disk {p.GetValue(diskOpt)} of VM {id} reverted to snapshot {p.GetValue(snapOpt)}.");
            return 0;
        });
        var delete = new Command("delete", "Delete a disk snapshot.") { Vm, diskOpt, snapOpt };
        delete.SetAction(async (p, ct) =>
        {
            using var host = await EngineHost.CreateAsync(p, ct).ConfigureAwait(false);
            var id = await EngineHost.ResolveVmAsync(host.Client, p.GetValue(Vm)!, ct).ConfigureAwait(false);
            await host.Snapshots.DeleteAsync(id, p.GetValue(diskOpt), p.GetValue(snapOpt), ct).ConfigureAwait(false);
            Console.WriteLine($"Snapshot {p.GetValue(snapOpt)} of disk {p.GetValue(diskOpt)} deleted.");
            return 0;
        });
        foreach (var x in new[] { list, create, revert, delete }) s.Subcommands.Add(x);
        return s;
    }

    private static Command Cleanup()
    {
        var c = new Command("cleanup", "Remove what failed or interrupted jobs left on the cloud (snapshots, temporary images, attachments).");
        foreach (var o in EngineHost.Options) c.Options.Add(o);
        c.SetAction(async (p, ct) =>
        {
            // Snapshots, images and templates need no proxy: a stopped proxy only leaves its own attachments for later.
            using var host = await EngineHost.CreateAsync(p, ct, proxyMustRun: false).ConfigureAwait(false);
            var report = await host.Cleaner.CleanAsync(ct: ct).ConfigureAwait(false);
            Console.WriteLine($"Removed {report.Removed} leftover object(s).");
            foreach (var f in report.Failures) Console.WriteLine($"  still there: {f}");
            foreach (var left in report.Pending) Console.WriteLine($"  pending: {left}");
            if (report.Pending.Count > 0) Console.WriteLine($"{report.Pending.Count} object(s) pending: not failures, they are looked at again by the next pass.");
            return report.Failures.Count == 0 ? 0 : 1;
        });
        return c;
    }
}

/// <summary>Who owns what a restore makes (docs/operations.md, "Names and owners of what a restore makes").</summary>
internal enum RestoreOwner { Original, Appliance }
