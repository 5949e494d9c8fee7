using System.Security;
using System.Text;

namespace ProxyBackup.XmlRpc;

/// <summary>
/// Removes secrets from text that came from the endpoint before it reaches an exception message, a
/// log, the catalog or the screen: an endpoint that echoes the request (an HTTP error page, a fault
/// string) would otherwise hand back the session string. Each secret is removed as sent and in the
/// forms an echo may take (XML-escaped, URL-encoded, Base64).
/// </summary>
public sealed class SecretScrubber
{
    public const string Mask = "***";
    public static readonly SecretScrubber None = new([]);

    private readonly string[] _forms;

    public SecretScrubber(IEnumerable<string> secrets) =>
        _forms = [.. secrets.Where(s => s.Length > 0)
            .SelectMany(s => new[] { s, SecurityElement.Escape(s), Uri.EscapeDataString(s), Convert.ToBase64String(Encoding.UTF8.GetBytes(s)) })
            .Distinct(StringComparer.Ordinal)
            .OrderByDescending(f => f.Length)];   // the session before the password inside it

    public string Scrub(string text)
    {
        foreach (var form in _forms) text = text.Replace(form, Mask, StringComparison.Ordinal);
        return text;
    }
}
