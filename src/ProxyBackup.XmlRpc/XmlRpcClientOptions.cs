namespace ProxyBackup.XmlRpc;

public sealed record XmlRpcClientOptions
{
    public required Uri Endpoint { get; init; }

    /// <summary>How long one call may take, from sending the request to the last byte of the answer.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>oned's own MESSAGE_SIZE default is 1 GiB; a pool document rarely reaches a few MB.</summary>
    public long MaxResponseBytes { get; init; } = 256L << 20;

    /// <summary>PEM file of the CA that signed the endpoint's certificate (a TLS proxy in front of oned).</summary>
    public string? CaCertificateFile { get; init; }

    /// <summary>SHA-256 of the endpoint's certificate (DER), hex, colons allowed: trusts exactly that certificate.</summary>
    public string? PinnedCertificateSha256 { get; init; }

    /// <summary>Secrets the endpoint may echo back (the session string): scrubbed from every error this client raises.</summary>
    public SecretScrubber Scrubber { get; init; } = SecretScrubber.None;

    /// <summary>oned serves 15 connections for everybody (MAX_CONN): keep a handful.</summary>
    public int MaxConnections { get; init; } = 4;
}
