using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>
/// A command an operator configured (a snapshot set's pre- and post-command, a drill's check),
/// run by /bin/sh with what it needs in its environment, stopped with its children after a timeout;
/// the last of its output goes to the job log (docs/operations.md, "Consistency of the snapshot set").
/// </summary>
internal static class OperatorCommand
{
    /// <summary>What of a command's output is kept: its last characters.</summary>
    private const int OutputTail = 2000;

    /// <summary>How a command ended, with the last of what it wrote to stdout and to stderr (kept apart: their interleaving is not ordered).</summary>
    public sealed record Outcome(int? ExitCode, string Output, string Error)
    {
        public bool Succeeded => ExitCode == 0;

        /// <summary>How it ended and why: the last line it wrote to stderr, else to stdout.</summary>
        public string Describe(TimeSpan timeout) =>
            (ExitCode is { } code ? $"exited {code}" : $"did not end within {timeout.TotalSeconds:0} s and was stopped")
            + ((LastLine(Error) ?? LastLine(Output)) is { } why ? $": {why}" : "");

        private static string? LastLine(string text) => text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).LastOrDefault();
    }

    /// <summary>The VM's id, name and addresses, the job and the phase, as the commands see them.</summary>
    public static Dictionary<string, string> VmEnvironment(VirtualMachine vm, string phase, string jobId)
    {
        var addresses = vm.Nics.Select(n => n.Ip).OfType<string>().ToList();
        return new(StringComparer.Ordinal)
        {
            ["PROXYBACKUP_PHASE"] = phase,
            ["PROXYBACKUP_JOB_ID"] = jobId,
            ["PROXYBACKUP_VM_ID"] = vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["PROXYBACKUP_VM_NAME"] = vm.Name,
            ["PROXYBACKUP_VM_IP"] = addresses.FirstOrDefault() ?? "",
            ["PROXYBACKUP_VM_IPS"] = string.Join(' ', addresses),
        };
    }

    public static async Task<Outcome> RunAsync(string command, string what, IReadOnlyDictionary<string, string> environment, TimeSpan timeout,
        IJobRecorder jobs, string jobId, ILogger logger, CancellationToken ct)
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        jobs.Log(jobId, "info", $"{what} started");
        using var process = Process.Start(psi) ?? throw new JobFailedException($"The {what} could not be started.");
        process.StandardInput.Close();
        var (output, error) = (new StringBuilder(), new StringBuilder());
        var reading = Task.WhenAll(TailAsync(process.StandardOutput, output), TailAsync(process.StandardError, error));
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
        string stdout, stderr;
        lock (output) stdout = output.ToString().Trim();
        lock (error) stderr = error.ToString().Trim();
        var outcome = new Outcome(exit, stdout, stderr);
        jobs.Log(jobId, outcome.Succeeded ? "info" : "warning", $"{what} {outcome.Describe(timeout)}");
        logger.LogInformation("{What} ended with {Exit}", what, exit?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "a timeout");
        return outcome;
    }

    /// <summary>Reads a stream to its end, keeping only its last <see cref="OutputTail"/> characters.</summary>
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
