using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace ProxyBackup.XmlRpc.Server;

/// <summary>Thrown by a handler to make the server drop the connection without answering (fault injection).</summary>
public sealed class XmlRpcDropConnectionException : Exception
{
    public XmlRpcDropConnectionException() : base("connection dropped on purpose") { }
}

/// <summary>
/// An XML-RPC server on Kestrel: POST /RPC2, one handler for all methods. A handler returns the
/// value or throws <see cref="XmlRpcFaultException"/>; any other exception becomes fault -500.
/// </summary>
public sealed class XmlRpcHttpServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Func<XmlRpcCall, CancellationToken, Task<object?>> _handler;
    private readonly long _maxRequestBytes;

    /// <param name="certificate">Serve HTTPS with this certificate (as a TLS proxy in front of oned would); null: plain HTTP.</param>
    public XmlRpcHttpServer(IPAddress address, int port, Func<XmlRpcCall, CancellationToken, Task<object?>> handler,
        long maxRequestBytes = 64L << 20, System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null)
    {
        _handler = handler;
        _maxRequestBytes = maxRequestBytes;
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(o =>
        {
            o.Listen(address, port, listen =>
            {
                if (certificate is not null) listen.UseHttps(certificate);
            });
            o.Limits.MaxRequestBodySize = maxRequestBytes;
            o.AddServerHeader = false;
        });
        builder.Services.Configure<Microsoft.Extensions.Hosting.HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2));
        _app = builder.Build();
        _app.MapPost("/RPC2", ServeAsync);
    }

    public Uri Endpoint { get; private set; } = new("http://127.0.0.1/RPC2");

    public void Start()
    {
        _app.StartAsync().GetAwaiter().GetResult();
        var bound = _app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        Endpoint = new Uri(new Uri(bound.Replace("[::]", "127.0.0.1", StringComparison.Ordinal)), "/RPC2");
    }

    private async Task ServeAsync(HttpContext context)
    {
        byte[] answer;
        try
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body, context.RequestAborted).ConfigureAwait(false);
            body.Position = 0;
            var call = XmlRpcReader.ParseCall(body, _maxRequestBytes);
            answer = XmlRpcWriter.Response(await _handler(call, context.RequestAborted).ConfigureAwait(false));
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
            context.Abort();
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            return;
        }
#pragma warning disable CA1031 // a handler bug must become a fault, not an HTML error page
        catch (Exception e)
#pragma warning restore CA1031
        {
            answer = XmlRpcWriter.Fault(XmlRpcFaultException.InternalError, e.Message);
        }
        context.Response.StatusCode = 200;
        context.Response.ContentType = "text/xml; charset=utf-8";
        context.Response.ContentLength = answer.Length;
        await context.Response.Body.WriteAsync(answer, context.RequestAborted).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync().ConfigureAwait(false);
        await _app.DisposeAsync().ConfigureAwait(false);
    }
}
