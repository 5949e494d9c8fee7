using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace ProxyBackup.Scheduler;

/// <summary>What the daemon tells operators about (docs/operations.md, "Notifications and metrics").</summary>
public enum NotificationEvent
{
    BackupFailed,
    RetentionFailed,
    VerifyFailed,

    /// <summary>A policy names a VM (by ID or name) that no longer exists: it is not protected.</summary>
    VmMissing,

    /// <summary>A run, or one VM of it, did not start before the policy's window closed.</summary>
    WindowSkipped,

    /// <summary>VMs have waited in the queue longer than the threshold.</summary>
    LongWait,

    /// <summary>The repository's disk or share is not mounted: backups are held until it is.</summary>
    RepositoryUnavailable,

    /// <summary>A scheduled restore drill failed (the point did not restore, its disks read back differently, the VM did not run, the check failed).</summary>
    DrillFailed,

    /// <summary>A VM's disks are in datastores no live proxy's cluster reaches: nobody backs it up.</summary>
    VmUnreachable,

    /// <summary>An off-site copy failed, or left out restore points damaged in the repository.</summary>
    CopyFailed,
    DailySummary,
}

/// <summary>One thing to tell: a one-line summary, and what an operator needs to act on it.</summary>
public sealed record Notification(NotificationEvent Event, string Summary, string? Policy = null, int? VmId = null, string? VmName = null, string? Detail = null)
{
    public DateTimeOffset Time { get; init; } = DateTimeOffset.UtcNow;

    /// <summary>backup_failed, vm_missing, ...: the webhook's "event" and the name operators filter on.</summary>
    public string EventName => JsonNamingPolicy.SnakeCaseLower.ConvertName(Event.ToString());

    /// <summary>A job that failed (backup, retention, verify): what 0.1's webhook receivers got, with its error.</summary>
    public bool IsFailure => Event is NotificationEvent.BackupFailed or NotificationEvent.RetentionFailed or NotificationEvent.VerifyFailed;
}

/// <summary>A channel that tells operators: the webhook, e-mail.</summary>
public interface INotifier
{
    Task NotifyAsync(Notification notification, CancellationToken ct);
}

/// <summary>
/// Every configured channel, each on its own: one that fails (a mail server down, a webhook
/// answering 500) is logged and never stops the others or the job that had something to tell.
/// </summary>
public sealed class NotifierSet(IReadOnlyList<INotifier> channels, ILogger logger) : INotifier
{
    public bool IsEmpty => channels.Count == 0;

    public async Task NotifyAsync(Notification notification, CancellationToken ct)
    {
        foreach (var channel in channels)
        {
            try { await channel.NotifyAsync(notification, ct).ConfigureAwait(false); }
            catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                logger.LogWarning("The {Event} notification could not be sent by {Channel}: {Error}", notification.EventName, channel.GetType().Name, e.Message);
            }
        }
    }
}
