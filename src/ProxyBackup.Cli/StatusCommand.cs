using System.CommandLine;
using System.Text.Json.Nodes;
using ProxyBackup.Catalog;
using ProxyBackup.Contracts;
using ProxyBackup.Engine;
using ProxyBackup.OpenNebula;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup status`: the appliance at a glance, from its configuration, the daemon's socket,
/// the cloud, the repository's disk and the catalog. Exits 1 when something needs the operator
/// (docs/operations.md, "Status at a glance"), so that monitoring can run it as a check.
/// </summary>
internal static class StatusCommand
{
    /// <summary>How long the daemon may take to answer on its socket.</summary>
    private static readonly TimeSpan DaemonWait = TimeSpan.FromSeconds(5);

    /// <summary>How long the cloud may take to answer before it counts as unreachable.</summary>
    private static readonly TimeSpan CloudWait = TimeSpan.FromSeconds(10);

    /// <summary>Less free space than this share of the repository's file system is a problem: the next full backup may not fit.</summary>
    private const double MinimumFreeShare = 0.05;

    public static Command Build()
    {
        var json = new Option<bool>("--json") { Description = "One JSON document (docs/operations.md, \"Machine-readable output\")." };
        var c = new Command("status", "The appliance at a glance: daemon, cloud, proxy VM, repository, jobs, recent failures, next runs; exits 1 when something needs attention.") { json, DaemonCommand.ConfigFile };
        c.SetAction(async (p, ct) =>
        {
            var (config, secrets) = Load(p.GetValue(DaemonCommand.ConfigFile)!);
            var status = await GatherAsync(config, secrets, ct).ConfigureAwait(false);
            if (p.GetValue(json)) CliFormat.PrintJson(status);
            else Print(status);
            return status.Problems.Count == 0 ? 0 : 1;
        });
        return c;
    }

    /// <summary>The appliance's configuration and secrets, as status and the console read them.</summary>
    internal static (AppConfig Config, AppSecrets Secrets) Load(string path)
    {
        if (!File.Exists(path)) throw new CliException($"No appliance configuration at {path}: set it up with 'proxybackup configure' (or give --config).");
        var config = AppConfig.Load(path);
        try { return (config, File.Exists(config.SecretsFile) ? AppSecrets.Load(config.SecretsFile!) : new AppSecrets()); }
        catch (UnauthorizedAccessException) { throw new CliException($"{config.SecretsFile} can be read by root only: run it with sudo."); }
    }

    internal sealed record Status(
        string Version, DaemonStatus Daemon, CloudStatus Cloud, ProxyStatus? ProxyVm, RepositoryStatus Repository,
        JsonArray Running, IReadOnlyList<int> Waiting, IReadOnlyList<JobRecord> RecentFailures, IReadOnlyList<NextRun> NextRuns,
        IReadOnlyList<ProtectedVm> ProtectedVms, IReadOnlyList<string> Problems);

    /// <summary>A VM an enabled policy selects, with its latest backup job and its latest restore drill (null: none yet).</summary>
    internal sealed record ProtectedVm(int Id, string Name, IReadOnlyList<string> Policies, JobRecord? LastBackup, JobRecord? LastDrill);

    internal sealed record DaemonStatus(bool Running, DateTimeOffset? Since, int? Pid, string? Version);

    internal sealed record CloudStatus(string Endpoint, string User, bool Reachable, string? Version, string? Error);

    internal sealed record ProxyStatus(int Id, string? Name, string? State);

    internal sealed record RepositoryStatus(string Path, bool Exists, long? TotalBytes, long? FreeBytes, DateTimeOffset? LastVerify, int? PointsVerifiedDamaged);

    internal sealed record NextRun(string Policy, DateTimeOffset At);

    internal static async Task<Status> GatherAsync(AppConfig config, AppSecrets secrets, CancellationToken ct)
    {
        var problems = new List<string>();
        var version = CliFormat.Version;

        JsonObject? answer;
        using (var wait = CancellationTokenSource.CreateLinkedTokenSource(ct))
        {
            // A wedged daemon must not hang a monitoring check.
            wait.CancelAfter(DaemonWait);
            try { answer = await DaemonApi.AskAsync(config.Daemon.Socket, new { op = "status" }, wait.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                answer = null;
                problems.Add($"The daemon did not answer within {DaemonWait.TotalSeconds:0} s on {config.Daemon.Socket}.");
            }
        }
        var daemon = answer is null
            ? new DaemonStatus(false, null, null, null)
            : new DaemonStatus(true, (DateTimeOffset?)answer["since"], (int?)answer["pid"], (string?)answer["version"]);
        if (!daemon.Running && problems.Count == 0) problems.Add("The daemon is not running: policies do not run (systemctl start proxybackup; journalctl -u proxybackup says why it stopped).");

        var (cloud, proxy, vms) = await CloudAsync(config, secrets, ct).ConfigureAwait(false);
        if (!cloud.Reachable) problems.Add($"OpenNebula at {cloud.Endpoint} cannot be reached: {cloud.Error}");
        else if (proxy is { State: not "RUNNING" }) problems.Add($"The proxy VM {proxy.Id} is {proxy.State ?? "not found"}: disks cannot be attached to it.");

        var repository = Repository(config, secrets, problems);
        if (!repository.Exists)
            problems.Add(config.Repository.MountPoint is { } mount && MountTable.At(mount) is null
                ? $"The repository disk is not mounted at {mount} ('proxybackup storage show' tells what is configured)."
                : $"The repository {repository.Path} is missing (is its disk or NFS share mounted?).");
        else if (repository.FreeBytes < MinimumFreeShare * repository.TotalBytes)
            problems.Add($"The repository's file system has {CliFormat.Bytes(repository.FreeBytes ?? 0)} free of {CliFormat.Bytes(repository.TotalBytes ?? 0)}: grow it or forget restore points.");
        if (repository.PointsVerifiedDamaged > 0) problems.Add($"The last verify found {repository.PointsVerifiedDamaged} damaged restore point(s): 'proxybackup repository verify' names them.");

        IReadOnlyList<JobRecord> failures = [];
        IReadOnlyList<NextRun> next = [];
        IReadOnlyList<ProtectedVm> protectedVms = [];
        if (config.Catalog.Exists)
        try
        {
            var catalog = config.Catalog.Open();
            var week = DateTimeOffset.UtcNow.AddDays(-7);
            failures = [.. catalog.Recent(500).Where(j => j.State is "failed" or "interrupted" && j.Started >= week).Take(10)];
            var now = DateTimeOffset.UtcNow;
            var enabled = catalog.Policies().Where(pol => pol.Enabled).ToList();
            // A failed backup matters while its VM is protected: one deleted, or no longer selected
            // by an enabled policy, would keep the check red with nothing left to fix. Without the
            // cloud that cannot be told, and every one counts.
            var runnable = enabled.Where(pol => pol.Runs()).ToList();
            bool Protected(int vmId) => vms is null || vms.Any(v => v.Id == vmId && runnable.Any(pol => pol.Selection.Matches(v)));
            foreach (var (vm, job) in catalog.LastJobs("backup").Where(j => j.Value.State is "failed" or "interrupted" && Protected(j.Key)).OrderBy(j => j.Key))
                problems.Add($"The last backup of VM {vm} {job.State} ({job.Started:yyyy-MM-dd HH:mm}Z){(job.Error is null ? "" : ": " + job.Error)}");
            foreach (var broken in enabled.Where(pol => pol.Problems().Count > 0))
                problems.Add($"Policy '{broken.Name}' does not run: {string.Join("; ", broken.Problems())}");
            next = [.. ProtectionPolicyRules.NextRuns(enabled, now).Select(n => new NextRun(n.Policy, n.At))];
            var last = catalog.LastJobs("backup");
            var drills = catalog.LastJobs("drill");
            foreach (var (vm, drill) in drills.Where(d => d.Value.State is "failed" or "interrupted" && Protected(d.Key)).OrderBy(d => d.Key))
                problems.Add($"The last restore drill of VM {vm} {drill.State} ({drill.Started:yyyy-MM-dd HH:mm}Z){(drill.Error is null ? "" : ": " + drill.Error)}");
            protectedVms = vms is null ? [] : [.. vms.Select(v => (Vm: v, Policies: runnable.Where(pol => pol.Selection.Matches(v)).Select(pol => pol.Name).ToList()))
                .Where(x => x.Policies.Count > 0)
                .Select(x => new ProtectedVm(x.Vm.Id, x.Vm.Name, x.Policies, last.GetValueOrDefault(x.Vm.Id), drills.GetValueOrDefault(x.Vm.Id)))];
        }
        catch (System.Data.Common.DbException e)
        {
            problems.Add($"The catalog {config.Catalog.Postgres ?? config.Catalog.Path} cannot be read: {e.Message}");
        }
        var running = answer?["running"]?.AsArray().DeepClone().AsArray() ?? [];
        IReadOnlyList<int> waiting = answer?["waiting"]?.AsArray().Select(w => w!.GetValue<int>()).ToList() ?? [];
        return new Status(version, daemon, cloud, proxy, repository, running, waiting, failures, next, protectedVms, problems);
    }

    /// <summary>The cloud as the appliance's account sees it, the proxy VM, and the VMs (null when the cloud cannot be reached).</summary>
    private static async Task<(CloudStatus, ProxyStatus?, IReadOnlyList<VirtualMachine>?)> CloudAsync(AppConfig config, AppSecrets secrets, CancellationToken ct)
    {
        var proxyId = config.OpenNebula.ProxyVmId ?? ProxyIdentity.FromContext();
        var unknownProxy = proxyId is { } pid ? new ProxyStatus(pid, null, null) : null;
        using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
        wait.CancelAfter(CloudWait);
        try
        {
            using var client = new OneClient(config.ClientOptions(secrets));
            var version = await client.SystemVersionAsync(wait.Token).ConfigureAwait(false);
            var vms = await client.VmPoolAsync(ct: wait.Token).ConfigureAwait(false);
            var proxy = unknownProxy is null ? null : vms.FirstOrDefault(v => v.Id == unknownProxy.Id) is { } vm ? new ProxyStatus(vm.Id, vm.Name, vm.StateName) : unknownProxy;
            return (new CloudStatus(config.OpenNebula.Endpoint, config.OpenNebula.User, true, version, null), proxy, vms);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return (new CloudStatus(config.OpenNebula.Endpoint, config.OpenNebula.User, false, null, $"no answer within {CloudWait.TotalSeconds:0} s"), unknownProxy, null);
        }
        // A password not yet configured (CliException) is a problem to show, not a reason to fail.
        catch (Exception e) when (e is OneException or HttpRequestException or IOException or CliException)
        {
            return (new CloudStatus(config.OpenNebula.Endpoint, config.OpenNebula.User, false, null, e.Message), unknownProxy, null);
        }
    }

    private static RepositoryStatus Repository(AppConfig config, AppSecrets secrets, List<string> problems)
    {
        var path = config.Repository.Path;
        if (config.Repository.MountPoint is { } mount && MountTable.At(mount) is null) return new RepositoryStatus(path, false, null, null, null, null);
        if (!config.Repository.Holds(secrets)) return new RepositoryStatus(path, false, null, null, null, null);
        try
        {
            // An S3 bucket has no size to tell.
            long? total = null, free = null;
            if (!ProxyBackup.ObjectStorage.S3Location.IsS3(path))
            {
                var drive = new DriveInfo(path);
                (total, free) = (drive.TotalSize, drive.AvailableFreeSpace);
            }
            var repository = config.Repository.Open(secrets);
            // The newest verification of each restore point: when the last verify ran, and what it found.
            var states = repository.ListRestorePoints().Select(repository.LastVerification).OfType<VerifyState>().ToList();
            DateTimeOffset? lastVerify = states.Count > 0 ? states.Max(s => s.Time) : null;
            int? damaged = lastVerify is null ? null : states.Count(s => !s.Ok && s.Time == lastVerify);
            return new RepositoryStatus(path, true, total, free, lastVerify, damaged);
        }
        catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
        {
            problems.Add($"The repository {path} cannot be opened: {e.Message}");
            return new RepositoryStatus(path, true, null, null, null, null);
        }
    }

    /// <summary>The appliance's state in four lines: version, daemon, cloud and proxy VM, repository (the CLI's and the console's header).</summary>
    internal static IEnumerable<string> Header(Status s)
    {
        yield return $"ProxyBackup {s.Version}";
        yield return s.Daemon.Running
            ? $"Daemon      running since {s.Daemon.Since:yyyy-MM-dd HH:mm}Z, pid {s.Daemon.Pid}{(s.Daemon.Version is { } v && v != s.Version ? $", version {v} (restart it to run {s.Version})" : "")}"
            : "Daemon      NOT RUNNING";
        yield return s.Cloud.Reachable
            ? $"OpenNebula  {s.Cloud.Endpoint} as {s.Cloud.User}: reachable, version {s.Cloud.Version}"
            : $"OpenNebula  {s.Cloud.Endpoint} as {s.Cloud.User}: UNREACHABLE ({s.Cloud.Error})";
        if (s.ProxyVm is { } proxy) yield return $"Proxy VM    {proxy.Id}{(proxy.Name is null ? "" : $" ({proxy.Name})")}: {proxy.State ?? "unknown"}";
        var r = s.Repository;
        yield return !r.Exists
            ? $"Repository  {r.Path}: MISSING"
            : $"Repository  {r.Path}: {CliFormat.Bytes(r.FreeBytes ?? 0)} free of {CliFormat.Bytes(r.TotalBytes ?? 0)}; last verify {(r.LastVerify is { } lv ? $"{lv:yyyy-MM-dd HH:mm}Z, {(r.PointsVerifiedDamaged > 0 ? $"{r.PointsVerifiedDamaged} damaged" : "no damage")}" : "never")}";
    }

    /// <summary>A drill in a few words: its outcome, the recovery time it measured, and when.</summary>
    internal static string DrillSummary(JobRecord drill) =>
        $"{drill.State}{(drill.Measured is { } m ? $", recovery {m.TotalSeconds:0.0} s" : "")}, {drill.Started:yyyy-MM-dd HH:mm}Z";

    private static void Print(Status s)
    {
        foreach (var line in Header(s)) Console.WriteLine(line);
        Console.WriteLine($"Jobs        {s.Running.Count} running, {s.Waiting.Count} waiting");
        foreach (var job in s.Running) Console.WriteLine($"  {CliFormat.RunningJob(job!)}");
        if (s.Waiting.Count > 0) Console.WriteLine($"  waiting: VM {string.Join(", VM ", s.Waiting)}");
        Console.WriteLine(s.NextRuns.Count == 0 ? "Next runs   none (no enabled policy)" : "Next runs");
        foreach (var n in s.NextRuns) Console.WriteLine($"  {n.At:yyyy-MM-dd HH:mm}Z  {n.Policy}");
        Console.WriteLine(s.RecentFailures.Count == 0 ? "Failures    none in the last 7 days" : "Failures in the last 7 days");
        foreach (var j in s.RecentFailures) Console.WriteLine($"  {j.Started:yyyy-MM-dd HH:mm}Z  {j.Kind} of VM {j.VmId} {j.State}: {j.Error}  (proxybackup jobs log {j.Id})");
        var drilled = s.ProtectedVms.Where(v => v.LastDrill is not null).ToList();
        Console.WriteLine(drilled.Count == 0 ? "Drills      none yet (proxybackup drill VM, or a policy's --drill-schedule)" : "Last drills");
        foreach (var v in drilled) Console.WriteLine($"  VM {v.Id} ({v.Name}): {DrillSummary(v.LastDrill!)}");
        Console.WriteLine(s.Problems.Count == 0 ? "All well." : $"{s.Problems.Count} problem(s):");
        foreach (var problem in s.Problems) Console.WriteLine($"  - {problem}");
    }
}
