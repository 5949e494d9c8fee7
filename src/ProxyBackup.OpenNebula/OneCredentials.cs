using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula;

/// <summary>
/// User and password (or login token). The secret is only ever joined into the session string at
/// the moment of a call; ToString never shows it.
/// </summary>
public sealed class OneCredentials
{
    private readonly string _secret;

    public OneCredentials(string user, string secret)
    {
        if (string.IsNullOrWhiteSpace(user)) throw new ArgumentException("The OpenNebula user name is empty.");
        if (user.Contains(':', StringComparison.Ordinal)) throw new ArgumentException("The OpenNebula user name must not contain ':'.");
        if (string.IsNullOrEmpty(secret)) throw new ArgumentException($"The password or token of OpenNebula user '{user}' is empty.");
        User = user;
        _secret = secret;
    }

    public string User { get; }

    /// <summary>Reads ONE_AUTH-style "user:password" text (the file the CLI uses).</summary>
    public static OneCredentials FromAuthString(string text)
    {
        var line = text.Trim();
        var colon = line.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0) throw new ArgumentException("Credentials must read 'user:password' (as in ~/.one/one_auth).");
        return new OneCredentials(line[..colon], line[(colon + 1)..]);
    }

    internal string Session => $"{User}:{_secret}";

    /// <summary>What must never come back out of the client: the session string and the secret alone.</summary>
    internal SecretScrubber Scrubber() => new([Session, _secret]);

    public override string ToString() => $"{User}:***";
}
