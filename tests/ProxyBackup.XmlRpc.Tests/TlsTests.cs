using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using ProxyBackup.TestSupport;
using ProxyBackup.XmlRpc.Server;

namespace ProxyBackup.XmlRpc.Tests;

/// <summary>TLS as an operator sets it up in front of oned: a private CA, or a pinned certificate.</summary>
public sealed class TlsTests : IAsyncLifetime
{
    private readonly TempDirectory _dir = new("pb-tls");
    private X509Certificate2 _ca = null!;
    private X509Certificate2 _leaf = null!;
    private XmlRpcHttpServer _server = null!;

    public async Task InitializeAsync()
    {
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Test Cloud CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        _ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));

        using var leafKey = RSA.Create(2048);
        var leafRequest = new CertificateRequest("CN=127.0.0.1", leafKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        leafRequest.CertificateExtensions.Add(san.Build());
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var signed = leafRequest.Create(_ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(10), RandomNumberGenerator.GetBytes(8));
        _leaf = X509CertificateLoader.LoadPkcs12(signed.CopyWithPrivateKey(leafKey).Export(X509ContentType.Pkcs12), null);
        File.WriteAllText(_dir.Combine("ca.pem"), _ca.ExportCertificatePem());

        _server = new XmlRpcHttpServer(IPAddress.Loopback, 0, (_, _) => Task.FromResult<object?>("6.10.5"), certificate: _leaf);
        _server.Start();
        await Task.CompletedTask;
    }

    private Uri Https => new($"https://127.0.0.1:{_server.Endpoint.Port}/RPC2");

    [Fact]
    public async Task A_private_ca_file_makes_the_endpoint_trusted()
    {
        using var client = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = Https, CaCertificateFile = _dir.Combine("ca.pem") });
        Assert.Equal("6.10.5", await client.CallAsync("one.system.version", ["a:b"]));
    }

    [Fact]
    public async Task Without_the_ca_the_handshake_is_refused_with_a_clear_message()
    {
        using var client = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = Https, Timeout = TimeSpan.FromSeconds(10) });
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => client.CallAsync("one.system.version", ["a:b"]));
        Assert.Contains("TLS handshake failed", e.Message, StringComparison.Ordinal);
        Assert.False(e.RequestMayHaveBeenProcessed);
    }

    [Fact]
    public async Task A_pinned_certificate_is_trusted_and_another_is_not()
    {
        var pin = Convert.ToHexString(SHA256.HashData(_leaf.RawData));
        var withColons = string.Join(':', Enumerable.Range(0, pin.Length / 2).Select(i => pin.Substring(i * 2, 2)));
        using var good = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = Https, PinnedCertificateSha256 = withColons });
        Assert.Equal("6.10.5", await good.CallAsync("one.system.version", ["a:b"]));
        using var bad = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = Https, PinnedCertificateSha256 = Convert.ToHexString(SHA256.HashData(_ca.RawData)) });
        await Assert.ThrowsAsync<XmlRpcTransportException>(() => bad.CallAsync("one.system.version", ["a:b"]));
    }

    [Fact]
    public async Task The_certificate_the_server_presents_is_fetched_and_pinning_its_fingerprint_makes_it_trusted()
    {
        using var presented = await ServerCertificate.FetchAsync(Https, TimeSpan.FromSeconds(10), CancellationToken.None);
        var fingerprint = ServerCertificate.Fingerprint(presented);

        Assert.Equal(_leaf.RawData, presented.RawData);
        Assert.Matches("^([0-9A-F]{2}:){31}[0-9A-F]{2}$", fingerprint);
        using var client = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = Https, PinnedCertificateSha256 = fingerprint });
        Assert.Equal("6.10.5", await client.CallAsync("one.system.version", ["a:b"]));
    }

    [Fact]
    public async Task Fetching_a_certificate_from_an_endpoint_that_is_not_tls_says_so()
    {
        await using var plain = new XmlRpcHttpServer(IPAddress.Loopback, 0, (_, _) => Task.FromResult<object?>("x"));
        plain.Start();
        var endpoint = new Uri($"https://127.0.0.1:{plain.Endpoint.Port}/RPC2");

        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => ServerCertificate.FetchAsync(endpoint, TimeSpan.FromSeconds(10), CancellationToken.None));

        Assert.StartsWith($"Cannot read the TLS certificate of 127.0.0.1:{plain.Endpoint.Port}: the TLS handshake failed (", e.Message, StringComparison.Ordinal);
        Assert.EndsWith("); is this port TLS?", e.Message, StringComparison.Ordinal);
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        _ca.Dispose();
        _leaf.Dispose();
        _dir.Dispose();
    }
}
