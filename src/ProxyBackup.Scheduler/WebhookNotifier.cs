using System.Text;
using System.Text.Json;

namespace ProxyBackup.Scheduler;

/// <summary>
/// POSTs a small JSON document about each notification to a URL the operator configured. Sent with a
/// Content-Length (not chunked), which the simplest receivers (chat webhooks, CGI scripts) expect.
/// </summary>
public sealed class WebhookNotifier(HttpClient http, Uri url) : INotifier
{
    public async Task NotifyAsync(Notification n, CancellationToken ct)
    {
        var json = JsonSerializer.Serialize(new
        {
            // 0.1's receivers read verify_failed with policy "verify" and vm_id -1, and "error" for what failed.
            @event = n.EventName, policy = n.Policy ?? (n.Event == NotificationEvent.VerifyFailed ? "verify" : null), vm_id = n.VmId ?? (n.Event == NotificationEvent.VerifyFailed ? -1 : null),
            vm_name = n.VmName, message = n.Summary, error = n.IsFailure ? n.Detail ?? n.Summary : null, detail = n.Detail, time = n.Time,
        });
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(url, content, ct).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
    }
}
