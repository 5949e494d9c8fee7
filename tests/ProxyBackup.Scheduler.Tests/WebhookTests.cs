using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace ProxyBackup.Scheduler.Tests;

public class WebhookTests
{
    [Fact]
    public async Task A_failure_is_posted_as_json_and_an_error_status_is_reported()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        async Task<string> Serve(string status)
        {
            using var c = await listener.AcceptTcpClientAsync();
            var s = c.GetStream();
            var buffer = new byte[65536];
            var text = new StringBuilder();
            while (!text.ToString().Contains("\r\n\r\n", StringComparison.Ordinal) || !BodyComplete(text.ToString()))
                text.Append(Encoding.UTF8.GetString(buffer, 0, await s.ReadAsync(buffer)));
            await s.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
            return text.ToString();
        }
        using var http = new HttpClient();
        var notifier = new WebhookNotifier(http, new Uri($"http://127.0.0.1:{port}/hook"));

        var served = Serve("200 OK");
        await notifier.NotifyAsync(new Notification(NotificationEvent.BackupFailed, "Backup of VM 42 (shop-db) failed", "gold", 42, "shop-db", "disk full"), CancellationToken.None);
        var request = await served;
        Assert.StartsWith("POST /hook HTTP/1.1", request, StringComparison.Ordinal);
        var body = JsonDocument.Parse(request[(request.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]).RootElement;
        Assert.Equal("backup_failed", body.GetProperty("event").GetString());
        Assert.Equal(42, body.GetProperty("vm_id").GetInt32());
        Assert.Equal("shop-db", body.GetProperty("vm_name").GetString());
        Assert.Equal("disk full", body.GetProperty("error").GetString());
        Assert.Equal("Backup of VM 42 (shop-db) failed", body.GetProperty("message").GetString());
        Assert.Equal("gold", body.GetProperty("policy").GetString());

        var refused = Serve("500 Internal Server Error");
        await Assert.ThrowsAsync<HttpRequestException>(() => notifier.NotifyAsync(new Notification(NotificationEvent.VmMissing, "gone"), CancellationToken.None));
        await refused;
    }

    private static bool BodyComplete(string text)
    {
        var head = text[..text.IndexOf("\r\n\r\n", StringComparison.Ordinal)];
        var line = head.Split("\r\n").FirstOrDefault(l => l.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase));
        if (line is null) return true;
        var length = int.Parse(line.Split(':')[1].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return Encoding.UTF8.GetByteCount(text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]) >= length;
    }
}
