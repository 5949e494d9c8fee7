namespace ProxyBackup.ObjectStorage;

/// <summary>
/// A repository in an S3 bucket: <c>s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]</c> (restic's form with
/// the scheme kept, so that a plain-HTTP test server and HTTPS are told apart). Path-style
/// addressing, which Ceph's radosgw and most S3-compatible servers take (docs/operations.md, "A repository on S3").
/// </summary>
public sealed record S3Location(Uri Endpoint, string Bucket, string Prefix, string Region = "us-east-1", bool PathStyle = true)
{
    public const string Scheme = "s3:";

    public static bool IsS3(string location) => location.StartsWith(Scheme, StringComparison.Ordinal);

    /// <summary>A location from the operator; a malformed one is told without repeating it (it might hold a credential typed by mistake).</summary>
    public static S3Location Parse(string location, string region = "us-east-1")
    {
        const string form = "s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]";
        if (!IsS3(location) || !Uri.TryCreate(location[Scheme.Length..], UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            throw new FormatException($"Not an S3 location: write {form}.");
        if (!string.IsNullOrEmpty(uri.UserInfo))
            throw new FormatException($"An S3 location carries no credentials (give them in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the configuration): write {form}.");
        var parts = uri.AbsolutePath.Trim('/').Split('/', 2);
        if (parts[0].Length is < 3 or > 63 || !parts[0].All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c is '-' or '.'))
            throw new FormatException($"'{parts[0]}' is not a valid bucket name (3 to 63 of a-z, 0-9, '-' and '.'): write {form}.");
        var prefix = parts.Length > 1 && parts[1].Trim('/').Length > 0 ? parts[1].Trim('/') + "/" : "";
        // ?region=NAME: the region requests are signed for (AWS buckets outside us-east-1); other servers ignore it.
        var query = System.Web.HttpUtility.ParseQueryString(uri.Query);
        if (query["region"] is { Length: > 0 } named)
        {
            if (!named.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-')) throw new FormatException($"'{named}' is not a region name: write {form}?region=eu-west-1.");
            region = named;
        }
        return new S3Location(new Uri(uri.GetLeftPart(UriPartial.Authority)), parts[0], prefix, region);
    }

    public override string ToString() => $"{Scheme}{Endpoint.GetLeftPart(UriPartial.Authority)}/{Bucket}{(Prefix.Length > 0 ? "/" + Prefix.TrimEnd('/') : "")}{(Region == "us-east-1" ? "" : $"?region={Region}")}";
}

/// <summary>An S3 access key and its secret; the secret is never printed (<see cref="ToString"/>).</summary>
public sealed record S3Credentials(string AccessKeyId, string SecretAccessKey)
{
    public override string ToString() => $"S3 access key {AccessKeyId}";

    /// <summary>A key and its secret, or null when either is missing (the other source is then asked).</summary>
    public static S3Credentials? Of(string? accessKeyId, string? secret) =>
        accessKeyId is { Length: > 0 } && secret is { Length: > 0 } ? new S3Credentials(accessKeyId, secret) : null;

    /// <summary>From AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (the names every S3 tool reads), or null when either is unset.</summary>
    public static S3Credentials? FromEnvironment() =>
        Of(Environment.GetEnvironmentVariable("AWS_ACCESS_KEY_ID"), Environment.GetEnvironmentVariable("AWS_SECRET_ACCESS_KEY"));
}
