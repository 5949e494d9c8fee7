using System.Net;
using System.Net.Sockets;
using System.Security;
using System.Text;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A "front-end" on loopback that answers every request as a script says: the test's hostile or
/// broken endpoints (an echo of the request, malformed or huge answers). One request per connection.
/// </summary>
public sealed class ScriptedEndpoint : IAsyncDisposable
{
    /// <summary>How <see cref="Echoing"/> sends the request back: as an HTTP error page, an XML-RPC fault, or an OpenNebula failure reply.</summary>
    public enum Echo { HttpError, Fault, FailureReply }

    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    /// <param name="answer">From the request (headers and body, as text): the status line's end, the content type and the body.</param>
    public ScriptedEndpoint(Func<string, (string Status, string Type, byte[] Body)> answer)
    {
        _listener.Start();
        Uri = new Uri($"http://127.0.0.1:{((IPEndPoint)_listener.LocalEndpoint).Port}/RPC2");
        _loop = Task.Run(() => ServeAsync(answer));
    }

    public Uri Uri { get; }

    /// <summary>
    /// Answers every request by echoing it back: whatever the client sent (the session string among
    /// it) comes back in the text the client turns into errors.
    /// </summary>
    public static ScriptedEndpoint Echoing(Echo echo) => new(request =>
    {
        var escaped = SecurityElement.Escape(request);
        var (status, type, body) = echo switch
        {
            Echo.HttpError => ("500 Internal Server Error", "text/plain", request[(request.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..]),
            Echo.Fault => ("200 OK", "text/xml",
                $"<?xml version=\"1.0\"?><methodResponse><fault><value><struct><member><name>faultCode</name><value><int>-500</int></value></member><member><name>faultString</name><value><string>{escaped}</string></value></member></struct></value></fault></methodResponse>"),
            _ => ("200 OK", "text/xml",
                $"<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><boolean>0</boolean></value><value><string>{escaped}</string></value><value><i4>512</i4></value></data></array></value></param></params></methodResponse>"),
        };
        return (status, type, Encoding.UTF8.GetBytes(body));
    });

    private async Task ServeAsync(Func<string, (string Status, string Type, byte[] Body)> answer)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try { client = await _listener.AcceptTcpClientAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            using (client)
            {
                try
                {
                    var stream = client.GetStream();
                    var (status, type, body) = answer(await ReadRequestAsync(stream));
                    await stream.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 {status}\r\nContent-Type: {type}\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"));
                    await stream.WriteAsync(body);
                }
                catch (IOException) { }
            }
        }
    }

    /// <summary>Headers and body of one request, as text.</summary>
    private static async Task<string> ReadRequestAsync(NetworkStream stream)
    {
        var received = new List<byte>();
        var buffer = new byte[8192];
        while (true)
        {
            var n = await stream.ReadAsync(buffer);
            if (n == 0) break;
            received.AddRange(buffer.AsSpan(0, n));
            var text = Encoding.UTF8.GetString([.. received]);
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end < 0) continue;
            var length = text[..end].Split("\r\n").Select(l => l.Split(':', 2)).Where(p => p.Length == 2 && p[0].Trim().Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                .Select(p => int.Parse(p[1].Trim(), System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();
            if (received.Count >= Encoding.UTF8.GetByteCount(text[..end]) + 4 + length) return text;
        }
        return Encoding.UTF8.GetString([.. received]);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        try { await _loop; }
        catch (OperationCanceledException) { }
        _stop.Dispose();
    }
}
