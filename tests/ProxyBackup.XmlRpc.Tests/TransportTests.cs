using System.Net;
using System.Net.Sockets;
using System.Text;
using ProxyBackup.XmlRpc.Server;

namespace ProxyBackup.XmlRpc.Tests;

/// <summary>What the client does when the other end is not a well-behaved XML-RPC server.</summary>
public sealed class TransportTests : IDisposable
{
    private readonly TcpListener _raw = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();

    public TransportTests() => _raw.Start();

    private Uri Endpoint => new($"http://127.0.0.1:{((IPEndPoint)_raw.LocalEndpoint).Port}/RPC2");

    /// <summary>Answers every connection with the given raw bytes (null: close without a word; "hang": never answer).</summary>
    private void Serve(string? raw)
    {
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                TcpClient c;
                try { c = await _raw.AcceptTcpClientAsync(_stop.Token); }
                catch (OperationCanceledException) { return; }
                _ = Task.Run(async () =>
                {
                    using (c)
                    {
                        var s = c.GetStream();
                        var buf = new byte[65536];
                        _ = await s.ReadAsync(buf, _stop.Token); // request head (and usually body); the answer does not depend on it
                        if (raw == "hang") { await Task.Delay(Timeout.Infinite, _stop.Token).ContinueWith(_ => { }); return; }
                        if (raw is not null) await s.WriteAsync(Encoding.UTF8.GetBytes(raw), _stop.Token);
                    }
                });
            }
        });
    }

    private static string Http(int status, string contentType, string body) =>
        $"HTTP/1.1 {status} X\r\nContent-Type: {contentType}\r\nContent-Length: {Encoding.UTF8.GetByteCount(body)}\r\nConnection: close\r\n\r\n{body}";

    private XmlRpcClient Client(TimeSpan? timeout = null, long max = 1 << 20) =>
        new(new XmlRpcClientOptions { Endpoint = Endpoint, Timeout = timeout ?? TimeSpan.FromSeconds(10), MaxResponseBytes = max });

    [Fact]
    public async Task Html_error_page_is_named_as_such()
    {
        Serve(Http(200, "text/html", "<!DOCTYPE html><html><body>Login</body></html>"));
        using var c = Client();
        var e = await Assert.ThrowsAsync<XmlRpcProtocolException>(() => c.CallAsync("one.system.version", ["a:b"]));
        Assert.Contains("HTML page", e.Message, StringComparison.Ordinal);
        Assert.Contains("/RPC2", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_500_is_a_transport_error_with_the_status()
    {
        Serve(Http(500, "text/plain", "Internal Server Error"));
        using var c = Client();
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => c.CallAsync("one.system.version", ["a:b"]));
        Assert.Equal(500, e.HttpStatus);
        Assert.Contains("HTTP 500", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Truncated_body_is_a_protocol_error()
    {
        Serve(Http(200, "text/xml", "<?xml version=\"1.0\"?><methodResponse><params><param><value><arr"));
        using var c = Client();
        var e = await Assert.ThrowsAsync<XmlRpcProtocolException>(() => c.CallAsync("one.system.version", ["a:b"]));
        Assert.Contains("Malformed XML", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Dropped_connection_is_a_transport_error_that_may_have_been_processed()
    {
        Serve(null);
        using var c = Client();
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => c.CallAsync("one.vm.attach", ["a:b", 1, "DISK=[]"]));
        Assert.True(e.RequestMayHaveBeenProcessed);
    }

    [Fact]
    public async Task Silent_server_times_out()
    {
        Serve("hang");
        using var c = Client(TimeSpan.FromMilliseconds(500));
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => c.CallAsync("one.vm.info", ["a:b", 1]));
        Assert.Contains("did not answer", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Oversized_answer_is_refused()
    {
        Serve(Http(200, "text/xml", "<?xml version=\"1.0\"?><methodResponse><params><param><value>" + new string('x', 5000) + "</value></param></params></methodResponse>"));
        using var c = Client(max: 1000);
        var e = await Assert.ThrowsAsync<XmlRpcProtocolException>(() => c.CallAsync("one.vm.info", ["a:b", 1]));
        Assert.Contains("limit", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Refused_connection_is_known_not_to_have_been_processed()
    {
        var port = ((IPEndPoint)_raw.LocalEndpoint).Port;
        _raw.Stop();
        using var c = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = new Uri($"http://127.0.0.1:{port}/RPC2") });
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => c.CallAsync("one.system.version", ["a:b"]));
        Assert.False(e.RequestMayHaveBeenProcessed);
        Assert.Contains("refused", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Our_server_answers_faults_for_malformed_requests_and_404_elsewhere()
    {
        await using var server = new XmlRpcHttpServer(IPAddress.Loopback, 0, (_, _) => Task.FromResult<object?>(1));
        server.Start();
        using var http = new HttpClient();
        var bad = await http.PostAsync(server.Endpoint, new StringContent("<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall/>"));
        var body = await bad.Content.ReadAsStringAsync();
        Assert.Contains("<fault>", body, StringComparison.Ordinal);
        Assert.Contains("DTD", body, StringComparison.Ordinal);
        var missing = await http.PostAsync(new Uri(server.Endpoint, "/other"), new StringContent(""));
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _raw.Stop();
        _stop.Dispose();
    }
}
