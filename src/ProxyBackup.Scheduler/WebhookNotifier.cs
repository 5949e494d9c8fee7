using System.Text;
using System.Text.Json;

namespace ProxyBackup.Scheduler;

/// <summary>
/// POSTs a small JSON document about a failed job to a URL the operator configured. Sent with a
/// Content-Length (not chunked), which the simplest receivers (chat webhooks, CGI scripts) expect.
/// </summary>
public sealed class WebhookNotifier(HttpClient http, Uri url) : IFailureNotifier
{
    public async Task NotifyAsync(FailedStep step, string policy, int vmId, string vmName, string error, CancellationToken ct)
    {
        var json = JsonSerializer.Serialize(new { @event = step switch { FailedStep.Retention => "retention_failed", FailedStep.Verify => "verify_failed", _ => "backup_failed" }, policy, vm_id = vmId, vm_name = vmName, error, time = DateTimeOffset.UtcNow });
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(url, content, ct).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
    }
}
