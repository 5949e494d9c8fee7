using System.Net;
using System.Net.Sockets;

namespace ProxyBackup.XmlRpc;

/// <summary>Thrown by a handler to make the server drop the connection without answering (fault injection).</summary>
public sealed class XmlRpcDropConnectionException : Exception
{
    public XmlRpcDropConnectionException() : base("connection dropped on purpose") { }
}

/// <summary>
/// A small XML-RPC server on HttpListener: POST /RPC2, one handler for all methods. A handler
/// returns the value or throws <see cref="XmlRpcFaultException"/>; anything else becomes fault -500.
/// </summary>
public sealed class XmlRpcHttpServer : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Func<XmlRpcCall, CancellationToken, Task<object?>> _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly long _maxRequestBytes;
    private Task? _loop;

    public XmlRpcHttpServer(IPAddress address, int port, Func<XmlRpcCall, CancellationToken, Task<object?>> handler, long maxRequestBytes = 64L << 20)
    {
        _handler = handler;
        _maxRequestBytes = maxRequestBytes;
        Port = port == 0 ? FreePort(address) : port;
        var host = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        _listener.Prefixes.Add($"http://{host}:{Port}/");
        Endpoint = new Uri($"http://{host}:{Port}/RPC2");
    }

    public int Port { get; }
    public Uri Endpoint { get; }

    public void Start()
    {
        _listener.Start();
        _loop = Task.Run(AcceptLoopAsync);
    }

    private static int FreePort(IPAddress address)
    {
        using var probe = new TcpListener(address, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception) when (_stop.IsCancellationRequested || !_listener.IsListening)
            {
                return;
            }
            catch (HttpListenerException)
            {
                continue;
            }
            _ = Task.Run(() => ServeAsync(context));
        }
    }

    private async Task ServeAsync(HttpListenerContext context)
    {
        var response = context.Response;
        try
        {
            if (context.Request.HttpMethod != "POST" || context.Request.Url?.AbsolutePath != "/RPC2")
            {
                response.StatusCode = context.Request.Url?.AbsolutePath == "/RPC2" ? 405 : 404;
                response.Close();
                return;
            }
            byte[] answer;
            try
            {
                var body = await ReadBodyAsync(context.Request).ConfigureAwait(false);
                using var ms = new MemoryStream(body, writable: false);
                var call = XmlRpcReader.ParseCall(ms, _maxRequestBytes);
                answer = XmlRpcWriter.Response(await _handler(call, _stop.Token).ConfigureAwait(false));
            }
            catch (XmlRpcFaultException f)
            {
                answer = XmlRpcWriter.Fault(f.FaultCode, f.FaultString);
            }
            catch (XmlRpcProtocolException p)
            {
                answer = XmlRpcWriter.Fault(XmlRpcFaultException.ParseError, p.Message);
            }
            catch (XmlRpcDropConnectionException)
            {
                response.Abort();
                return;
            }
#pragma warning disable CA1031 // a handler bug must become a fault, not kill the server
            catch (Exception e)
#pragma warning restore CA1031
            {
                answer = XmlRpcWriter.Fault(XmlRpcFaultException.InternalError, e.Message);
            }
            response.StatusCode = 200;
            response.ContentType = "text/xml; charset=utf-8";
            response.ContentLength64 = answer.Length;
            await response.OutputStream.WriteAsync(answer).ConfigureAwait(false);
            response.Close();
        }
        catch (Exception e) when (e is HttpListenerException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            // The client went away; nothing to answer.
        }
    }

    private async Task<byte[]> ReadBodyAsync(HttpListenerRequest request)
    {
        if (request.ContentLength64 > _maxRequestBytes)
            throw new XmlRpcProtocolException($"Request larger than {_maxRequestBytes} bytes.");
        using var ms = new MemoryStream();
        var buffer = new byte[65536];
        int n;
        while ((n = await request.InputStream.ReadAsync(buffer).ConfigureAwait(false)) > 0)
        {
            if (ms.Length + n > _maxRequestBytes) throw new XmlRpcProtocolException($"Request larger than {_maxRequestBytes} bytes.");
            ms.Write(buffer, 0, n);
        }
        return ms.ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Stop();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        _listener.Close();
        _stop.Dispose();
    }
}
