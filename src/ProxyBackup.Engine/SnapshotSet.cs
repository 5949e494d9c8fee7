using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>The snapshots of a VM's disks, and how long the VM was paused for them (null: not paused).</summary>
public sealed record TakenSnapshotSet(IReadOnlyDictionary<int, JobSnapshot> Snapshots, TimeSpan? Paused);

/// <summary>
/// Takes the snapshot set of one backup as its policy asks (docs/operations.md, "Consistency of the
/// snapshot set"): the operator's pre-command (a failure stops the backup before any snapshot), the
/// VM suspended when the mode is Suspend and it runs, every disk snapshotted, the VM resumed (also
/// when a snapshot failed), then the post-command (a failure is a warning: the snapshots exist).
/// </summary>
internal sealed class SnapshotSet(CloudTransaction cloud, IJobRecorder jobs, ILogger logger)
{
    /// <summary>What of a command's output reaches the job log: its last characters.</summary>
    private const int OutputTail = 2000;

    public async Task<TakenSnapshotSet> TakeAsync(VirtualMachine vm, IReadOnlyList<VmDisk> disks, SnapshotConsistency consistency, List<string> warnings, CancellationToken ct)
    {
        var timeout = TimeSpan.FromSeconds(consistency.CommandTimeoutSeconds);
        if (consistency.PreCommand is { Length: > 0 } pre)
        {
            var outcome = await RunCommandAsync(pre, "pre", vm, timeout, ct).ConfigureAwait(false);
            if (!outcome.Succeeded) throw new JobFailedException($"The pre-snapshot command {outcome.Describe(timeout)}; no snapshot was taken.");
        }
        try
        {
            return await SnapshotDisksAsync(vm, disks, consistency.Mode, ct).ConfigureAwait(false);
        }
        finally
        {
            if (consistency.PostCommand is { Length: > 0 } post)
            {
                // Run also when the job is being cancelled: it undoes what the pre-command did (a frozen database).
                var outcome = await RunCommandAsync(post, "post", vm, timeout, CancellationToken.None).ConfigureAwait(false);
                if (!outcome.Succeeded) warnings.Add($"the post-snapshot command {outcome.Describe(timeout)}");
            }
        }
    }

    private async Task<TakenSnapshotSet> SnapshotDisksAsync(VirtualMachine vm, IReadOnlyList<VmDisk> disks, ConsistencyMode mode, CancellationToken ct)
    {
        // A VM that does not run writes nothing: its disks are one moment already, no pause needed.
        var suspension = mode == ConsistencyMode.Suspend && vm is { State: VmState.Active, LcmState: LcmState.Running }
            ? await cloud.SuspendAsync(vm.Id, ct).ConfigureAwait(false)
            : null;
        var snapshots = new Dictionary<int, JobSnapshot>();
        TimeSpan? paused = null;
        try
        {
            // Sequential: back to back while the VM runs; each disk crash-consistent on its own, the
            // set not one moment across disks (docs/opennebula.md, "Disk snapshots").
            foreach (var d in disks)
            {
                ct.ThrowIfCancellationRequested();
                snapshots[d.DiskId] = await cloud.TakeSnapshotAsync(vm.Id, d.DiskId, ct).ConfigureAwait(false);
            }
        }
        finally
        {
            // Not cut by a cancellation: the VM's users wait for it (the operation timeout bounds it);
            // a resume that fails leaves its journal entry, and the job's compensation resumes it.
            if (suspension is not null) paused = await cloud.ResumeAsync(suspension, CancellationToken.None).ConfigureAwait(false);
        }
        if (paused is { } p)
            jobs.Log(cloud.JobId, "info", $"VM {vm.Id} paused {p.TotalSeconds:0.0} s for a consistent snapshot set of {disks.Count} disk(s) (suspend)");
        return new TakenSnapshotSet(snapshots, paused);
    }

    private sealed record CommandOutcome(int? ExitCode, string Output)
    {
        public bool Succeeded => ExitCode == 0;

        public string Describe(TimeSpan timeout) =>
            (ExitCode is { } code ? $"exited {code}" : $"did not end within {timeout.TotalSeconds:0} s and was stopped")
            + (Output.Length > 0 ? $": {Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault()}" : "");
    }

    /// <summary>
    /// Runs an operator's command with /bin/sh, the VM's id, name and addresses in its environment;
    /// stopped (with its children) after the timeout. Its output's tail goes to the job log.
    /// </summary>
    private async Task<CommandOutcome> RunCommandAsync(string command, string phase, VirtualMachine vm, TimeSpan timeout, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        psi.Environment["PROXYBACKUP_PHASE"] = phase;
        psi.Environment["PROXYBACKUP_JOB_ID"] = cloud.JobId;
        psi.Environment["PROXYBACKUP_VM_ID"] = vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
        psi.Environment["PROXYBACKUP_VM_NAME"] = vm.Name;
        var addresses = vm.Nics.Select(n => n.Ip).OfType<string>().ToList();
        psi.Environment["PROXYBACKUP_VM_IP"] = addresses.FirstOrDefault() ?? "";
        psi.Environment["PROXYBACKUP_VM_IPS"] = string.Join(' ', addresses);
        jobs.Log(cloud.JobId, "info", $"{phase}-snapshot command started");
        using var process = Process.Start(psi) ?? throw new JobFailedException($"The {phase}-snapshot command could not be started.");
        process.StandardInput.Close();
        var output = new StringBuilder();
        var reading = Task.WhenAll(TailAsync(process.StandardOutput, output), TailAsync(process.StandardError, output));
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(timeout);
        int? exit;
        try
        {
            await process.WaitForExitAsync(limit.Token).ConfigureAwait(false);
            exit = process.ExitCode;
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None).ConfigureAwait(false);
            ct.ThrowIfCancellationRequested();
            exit = null;
        }
        // A command that left a child holding its output open is not waited for beyond a moment.
        await reading.WaitAsync(TimeSpan.FromSeconds(5), CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        string text;
        lock (output) text = output.ToString().Trim();
        var outcome = new CommandOutcome(exit, text);
        jobs.Log(cloud.JobId, outcome.Succeeded ? "info" : "warning", $"{phase}-snapshot command {outcome.Describe(timeout)}");
        logger.LogInformation("VM {VmId}: {Phase}-snapshot command ended with {Exit}", vm.Id, phase, exit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "a timeout");
        return outcome;
    }

    /// <summary>Reads a stream to its end, keeping only the last <see cref="OutputTail"/> characters of both streams together.</summary>
    private static async Task TailAsync(StreamReader reader, StringBuilder into)
    {
        var buffer = new char[4096];
        int n;
        while ((n = await reader.ReadAsync(buffer).ConfigureAwait(false)) > 0)
            lock (into)
            {
                into.Append(buffer, 0, n);
                if (into.Length > OutputTail) into.Remove(0, into.Length - OutputTail);
            }
    }
}
