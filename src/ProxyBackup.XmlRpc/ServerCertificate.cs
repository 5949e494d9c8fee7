using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace ProxyBackup.XmlRpc;

/// <summary>
/// The certificate an https endpoint presents, fetched without trusting it, so that an operator can
/// compare its fingerprint with the front-end's and pin it (trust on first use, as ssh does).
/// </summary>
public static class ServerCertificate
{
    public static async Task<X509Certificate2> FetchAsync(Uri endpoint, TimeSpan timeout, CancellationToken ct)
    {
        if (endpoint.Scheme != Uri.UriSchemeHttps) throw new ArgumentException($"{endpoint} is not an https endpoint: there is no certificate to pin.", nameof(endpoint));
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        X509Certificate2? presented = null;
        try
        {
            using var tcp = new TcpClient();
            await tcp.ConnectAsync(endpoint.Host, endpoint.Port, deadline.Token).ConfigureAwait(false);
            // Accepting any certificate is safe here only because nothing is ever sent on this
            // connection: it exists to show the certificate to a person who decides.
            await using var tls = new SslStream(tcp.GetStream(), leaveInnerStreamOpen: false, (_, cert, _, _) =>
            {
                if (cert is not null) presented = X509CertificateLoader.LoadCertificate(cert.GetRawCertData());
                return true;
            });
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions { TargetHost = endpoint.IdnHost }, deadline.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is SocketException or IOException or AuthenticationException || (e is OperationCanceledException && !ct.IsCancellationRequested))
        {
            presented?.Dispose();
            var why = e switch
            {
                OperationCanceledException => $"no answer within {timeout.TotalSeconds:0} s",
                SocketException => e.Message.TrimEnd('.'),
                _ => $"the TLS handshake failed ({e.Message.TrimEnd('.')}); is this port TLS?",
            };
            throw new XmlRpcTransportException($"Cannot read the TLS certificate of {endpoint.Host}:{endpoint.Port}: {why}", requestMayHaveBeenProcessed: false, e);
        }
        return presented ?? throw new XmlRpcTransportException($"{endpoint.Host}:{endpoint.Port} presented no TLS certificate.", requestMayHaveBeenProcessed: false);
    }

    /// <summary>SHA-256 of the certificate's DER bytes, as pairs of hex digits joined by colons (openssl's -fingerprint form).</summary>
    public static string Fingerprint(X509Certificate2 certificate) =>
        string.Join(':', SHA256.HashData(certificate.RawData).Select(b => b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)));
}
