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
            @event = n.EventName, policy = n.Policy, vm_id = n.VmId, vm_name = n.VmName, message = n.Summary,
            // "error": what failed, as 0.1 receivers read it; null for a summary.
            error = n.IsProblem ? n.Detail ?? n.Summary : null, detail = n.Detail, time = n.Time,
        });
        using var content = new StringContent(json, Encoding.UTF8, "application/json");
        using var response = await http.PostAsync(url, content, ct).ConfigureAwait(false);
        response.EnsureSuccessStatusCode();
    }
}
