using ProxyBackup.Repository;

namespace ProxyBackup.ObjectStorage;

/// <summary>Where a repository named by the operator lives: a directory path, or an S3 location (<see cref="S3Location"/>).</summary>
public static class RepositoryLocation
{
    /// <summary>The storage at <paramref name="location"/>; for S3, with <paramref name="credentials"/>, else those of the environment.</summary>
    public static IRepositoryStorage Storage(string location, S3Credentials? credentials = null)
    {
        if (!S3Location.IsS3(location)) return new LocalRepositoryStorage(location);
        S3Location parsed;
        try { parsed = S3Location.Parse(location); }
        catch (FormatException e) { throw new RepositoryException(e.Message); }
        return new S3RepositoryStorage(parsed, credentials ?? S3Credentials.FromEnvironment()
            ?? throw new RepositoryException($"{parsed} needs an S3 access key: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or Repository:S3AccessKeyId in the configuration and its secret as S3SecretAccessKey in the secrets file (docs/operations.md, \"A repository on S3\")."));
    }

    /// <summary>What is wrong with a configured location, or null: an absolute directory path or a well-formed S3 location.</summary>
    public static string? Problem(string? location)
    {
        if (string.IsNullOrWhiteSpace(location)) return "an absolute directory path, or an S3 location s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]";
        if (!S3Location.IsS3(location)) return Path.IsPathRooted(location) ? null : "an absolute directory path, or an S3 location s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]";
        try { S3Location.Parse(location); return null; }
        catch (FormatException e) { return e.Message; }
    }
}
