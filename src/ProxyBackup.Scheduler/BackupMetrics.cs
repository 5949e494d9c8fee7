using System.Globalization;
using System.Text;
using ProxyBackup.Contracts;

namespace ProxyBackup.Scheduler;

/// <summary>
/// The backups' state in Prometheus' text format, for node exporter's textfile collector: written
/// whole to a temporary file and renamed, so the collector never reads half a file
/// (docs/operations.md, "Notifications and metrics").
/// </summary>
public static class BackupMetrics
{
    /// <summary>What the file reports besides the catalog's jobs: the queue and the repository's file system (null when it cannot be read).</summary>
    public sealed record State(int Running, int Waiting, long? RepositoryTotalBytes, long? RepositoryFreeBytes);

    public static string Render(IJobRecorder jobs, IRestorePointList? index, State state)
    {
        var names = index?.ListedPoints().GroupBy(p => p.VmId).ToDictionary(g => g.Key, g => g.MaxBy(p => p.Time)!.VmName) ?? [];
        var succeeded = jobs.LastJobs("backup", "succeeded");
        var latest = jobs.LastJobs("backup");
        var failures = jobs.FailureCounts("backup");
        var text = new StringBuilder();
        string Labels(int vm) => names.TryGetValue(vm, out var name) && name.Length > 0
            ? $"{{vm_id=\"{vm}\",vm_name=\"{Escape(name)}\"}}" : $"{{vm_id=\"{vm}\"}}";
        void Family(string name, string type, string help, IEnumerable<(string Labels, double Value)> samples)
        {
            text.Append("# HELP ").Append(name).Append(' ').Append(help).Append('\n');
            text.Append("# TYPE ").Append(name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, value) in samples) text.Append(name).Append(labels).Append(' ').Append(value.ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
        var ok = succeeded.OrderBy(j => j.Key).ToList();
        Family("proxybackup_last_success_timestamp_seconds", "gauge", "When the VM's last successful backup ended (Unix time).",
            ok.Select(j => (Labels(j.Key), (double)(j.Value.Ended ?? j.Value.Started).ToUnixTimeSeconds())));
        Family("proxybackup_last_success_duration_seconds", "gauge", "How long the VM's last successful backup took.",
            ok.Select(j => (Labels(j.Key), Math.Round(((j.Value.Ended ?? j.Value.Started) - j.Value.Started).TotalSeconds, 3))));
        Family("proxybackup_last_success_read_bytes", "gauge", "Bytes the VM's last successful backup read from its disks.", ok.Select(j => (Labels(j.Key), (double)j.Value.BytesRead)));
        Family("proxybackup_last_success_stored_bytes", "gauge", "New bytes the VM's last successful backup stored in the repository.", ok.Select(j => (Labels(j.Key), (double)j.Value.BytesStored)));
        Family("proxybackup_last_backup_failed", "gauge", "1 when the VM's latest backup failed or was interrupted.",
            latest.OrderBy(j => j.Key).Select(j => (Labels(j.Key), j.Value.State is "failed" or "interrupted" ? 1.0 : 0.0)));
        Family("proxybackup_backup_attempts_failed_total", "counter", "Backup attempts of the VM that failed or were interrupted (a retry that then succeeded counts too).", failures.OrderBy(f => f.Key).Select(f => (Labels(f.Key), (double)f.Value)));
        Family("proxybackup_jobs_running", "gauge", "Backups running now.", [("", state.Running)]);
        Family("proxybackup_jobs_waiting", "gauge", "Backups waiting in the queue.", [("", state.Waiting)]);
        if (state.RepositoryTotalBytes is { } total && state.RepositoryFreeBytes is { } free)
        {
            Family("proxybackup_repository_size_bytes", "gauge", "Size of the repository's file system.", [("", total)]);
            Family("proxybackup_repository_used_bytes", "gauge", "Bytes used on the repository's file system.", [("", total - free)]);
            Family("proxybackup_repository_free_bytes", "gauge", "Bytes free on the repository's file system.", [("", free)]);
        }
        return text.ToString();
    }

    /// <summary>Writes the file whole (temporary file, then rename), readable by the collector.</summary>
    public static void Write(string path, string text) =>
        ProxyBackup.Repository.AtomicFile.Write(Path.GetDirectoryName(Path.GetFullPath(path))!, path, System.Text.Encoding.UTF8.GetBytes(text), ProxyBackup.Repository.Durability.ContentBeforeName,
            mode: UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);

    /// <summary>Label values escape backslash, double quote and newline.</summary>
    private static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
