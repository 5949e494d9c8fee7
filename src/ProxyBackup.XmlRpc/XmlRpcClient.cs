using System.Net;
using System.Net.Http.Headers;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ProxyBackup.XmlRpc;

/// <summary>An XML-RPC client over HTTP(S): one pooled HttpClient, bounded answers, typed errors.</summary>
public sealed class XmlRpcClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly XmlRpcClientOptions _options;

    public XmlRpcClient(XmlRpcClientOptions options)
    {
        _options = options;
        if (options.Endpoint.Scheme is not ("http" or "https"))
            throw new ArgumentException($"Endpoint '{options.Endpoint}' must be an http:// or https:// URL.");
        var handler = new SocketsHttpHandler
        {
            MaxConnectionsPerServer = options.MaxConnections,
            // oned closes idle keep-alive connections after 15 s (KEEPALIVE_TIMEOUT): drop ours first.
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(10),
            ConnectTimeout = TimeSpan.FromSeconds(Math.Min(15, options.Timeout.TotalSeconds)),
            AutomaticDecompression = DecompressionMethods.None,
            UseProxy = false,
        };
        var validator = CertificateValidator(options);
        if (validator is not null)
            handler.SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = validator };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    public Uri Endpoint => _options.Endpoint;

    /// <summary>Calls <paramref name="method"/>; every error it raises is scrubbed of the configured secrets.</summary>
    /// <param name="strings">Reads the answer's string values as they arrive (<see cref="XmlRpcReader.ParseResponse"/>).</param>
    public async Task<object?> CallAsync(string method, IReadOnlyList<object?> parameters, CancellationToken cancellationToken = default, XmlRpcStringReader? strings = null)
    {
        try
        {
            return await CallUnscrubbedAsync(method, parameters, strings, cancellationToken).ConfigureAwait(false);
        }
        catch (XmlRpcException e)
        {
            var scrubbed = e.Scrubbed(_options.Scrubber);
            if (ReferenceEquals(scrubbed, e)) throw;
            throw scrubbed;
        }
    }

    private async Task<object?> CallUnscrubbedAsync(string method, IReadOnlyList<object?> parameters, XmlRpcStringReader? strings, CancellationToken cancellationToken)
    {
        var body = XmlRpcWriter.MethodCall(method, parameters);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_options.Timeout);
        using var request = new HttpRequestMessage(HttpMethod.Post, _options.Endpoint) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("text/xml");
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token).ConfigureAwait(false);
            var bytes = await ReadBoundedAsync(response.Content, timeout.Token).ConfigureAwait(false);
            var mediaType = response.Content.Headers.ContentType?.MediaType ?? "";
            if (response.StatusCode != HttpStatusCode.OK)
                throw new XmlRpcTransportException(
                    $"{_options.Endpoint} answered HTTP {(int)response.StatusCode} {response.ReasonPhrase}{Excerpt(bytes)}; check the endpoint URL (usually http://<front-end>:2633/RPC2).",
                    requestMayHaveBeenProcessed: (int)response.StatusCode >= 500, httpStatus: (int)response.StatusCode);
            if (mediaType.Contains("html", StringComparison.OrdinalIgnoreCase) || LooksLikeHtml(bytes))
                throw new XmlRpcProtocolException($"{_options.Endpoint} answered with an HTML page, not XML-RPC; check the endpoint URL (usually http://<front-end>:2633/RPC2).");
            if (bytes.Count == 0)
                throw new XmlRpcProtocolException($"{_options.Endpoint} answered {method} with an empty body.");
            using var ms = new MemoryStream(bytes.Array!, bytes.Offset, bytes.Count, writable: false);
            // Headers, body and parse run under one deadline: a slow or huge answer costs at most the call timeout.
            return XmlRpcReader.ParseResponse(ms, _options.MaxResponseBytes, timeout.Token, strings);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new XmlRpcTransportException($"{_options.Endpoint} did not answer {method} within {_options.Timeout.TotalSeconds:0.#} s (headers, body and parse together).", requestMayHaveBeenProcessed: true, timedOut: true);
        }
        catch (HttpRequestException e)
        {
            var socketError = (e.InnerException as SocketException)?.SocketErrorCode;
            var neverSent = socketError is SocketError.ConnectionRefused or SocketError.HostNotFound or SocketError.NetworkUnreachable or SocketError.HostUnreachable or SocketError.TryAgain
                || e.HttpRequestError is HttpRequestError.NameResolutionError or HttpRequestError.SecureConnectionError;
            var why = e.HttpRequestError switch
            {
                HttpRequestError.NameResolutionError => "the host name does not resolve",
                HttpRequestError.SecureConnectionError => "the TLS handshake failed (certificate not trusted, or not a TLS endpoint)",
                _ when socketError == SocketError.ConnectionRefused => "the connection was refused",
                _ when socketError is SocketError.NetworkUnreachable or SocketError.HostUnreachable => "the network or host is unreachable (check this machine's network and routes)",
                _ when socketError == SocketError.TimedOut => "the connection timed out",
                HttpRequestError.ResponseEnded => "the server closed the connection before answering",
                _ when e.InnerException is IOException => "the server closed the connection",
                _ => e.Message.TrimEnd('.'),
            };
            throw new XmlRpcTransportException($"Cannot reach {_options.Endpoint}: {why}.", requestMayHaveBeenProcessed: !neverSent, e);
        }
        catch (IOException e)
        {
            throw new XmlRpcTransportException($"The connection to {_options.Endpoint} broke during {method}: {e.Message}", requestMayHaveBeenProcessed: true, e);
        }
    }

    /// <summary>The answer's bytes, refused beyond the limit; the buffer is not copied again afterwards (a large answer is held once).</summary>
    private async Task<ArraySegment<byte>> ReadBoundedAsync(HttpContent content, CancellationToken ct)
    {
        if (content.Headers.ContentLength > _options.MaxResponseBytes)
            throw TooLarge($"The answer ({content.Headers.ContentLength} bytes)");
        await using var stream = await content.ReadAsStreamAsync(ct).ConfigureAwait(false);
        using var ms = new MemoryStream((int)Math.Min(content.Headers.ContentLength ?? 0, _options.MaxResponseBytes));
        var buffer = new byte[81920];
        int n;
        while ((n = await stream.ReadAsync(buffer, ct).ConfigureAwait(false)) > 0)
        {
            if (ms.Length + n > _options.MaxResponseBytes)
                throw TooLarge("The answer");
            ms.Write(buffer, 0, n);
        }
        return ms.TryGetBuffer(out var written) ? written : ms.ToArray();
    }

    private XmlRpcProtocolException TooLarge(string answer) =>
        new($"{answer} exceeds the limit of {_options.MaxResponseBytes} bytes; if the front-end's pools are that large, raise the answer limit.");

    private static bool LooksLikeHtml(ArraySegment<byte> bytes)
    {
        var head = System.Text.Encoding.UTF8.GetString(bytes.Array!, bytes.Offset, Math.Min(bytes.Count, 256)).TrimStart();
        return head.StartsWith("<!DOCTYPE html", StringComparison.OrdinalIgnoreCase) || head.StartsWith("<html", StringComparison.OrdinalIgnoreCase);
    }

    private static string Excerpt(ArraySegment<byte> bytes)
    {
        if (bytes.Count == 0) return "";
        var text = System.Text.Encoding.UTF8.GetString(bytes.Array!, bytes.Offset, Math.Min(bytes.Count, 200));
        text = System.Text.RegularExpressions.Regex.Replace(text, "<[^>]*>|\\s+", " ").Trim();
        return text.Length == 0 ? "" : $" ({text})";
    }

    private static RemoteCertificateValidationCallback? CertificateValidator(XmlRpcClientOptions options)
    {
        if (options.PinnedCertificateSha256 is { } pin)
        {
            var expected = Convert.FromHexString(pin.Replace(":", "", StringComparison.Ordinal).Trim());
            return (_, cert, _, _) => cert is not null && CryptographicOperations.FixedTimeEquals(SHA256.HashData(cert.GetRawCertData()), expected);
        }
        if (options.CaCertificateFile is { } caFile) return CertificateTrust.IssuedBy(caFile);
        return null;
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>TLS trust in a private CA, for every TLS client of the appliance (OpenNebula, the mail server).</summary>
public static class CertificateTrust
{
    /// <summary>The server's chain must end at the CA in <paramref name="caFile"/>, and its name must match.</summary>
    public static RemoteCertificateValidationCallback IssuedBy(string caFile)
    {
        var ca = X509CertificateLoader.LoadCertificateFromFile(caFile);
        return (_, cert, _, errors) =>
        {
            if (cert is null) return false;
            if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) return false;
            using var chain = new X509Chain();
            chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
            chain.ChainPolicy.CustomTrustStore.Add(ca);
            chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
            return chain.Build(new X509Certificate2(cert));
        };
    }
}
