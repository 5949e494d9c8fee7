using System.Net.Http.Json;

namespace ProxyBackup.Scheduler;

/// <summary>POSTs a small JSON document about a failed job to a URL the operator configured.</summary>
public sealed class WebhookNotifier(HttpClient http, Uri url) : IFailureNotifier
{
    public async Task NotifyAsync(string policy, int vmId, string vmName, string error, CancellationToken ct)
    {
        using var response = await http.PostAsJsonAsync(url, new { @event = "backup_failed", policy, vm_id = vmId, vm_name = vmName, error, time = DateTimeOffset.UtcNow }, ct).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
    }
}
