using System.Globalization;
using System.Xml;
using System.Xml.Linq;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula;

/// <summary>Reading oned's documents: plain text and CDATA alike, DTDs refused.</summary>
public static class OneXml
{
    private static readonly XmlReaderSettings Secure = new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersFromEntities = 1024,
        IgnoreComments = true,
    };

    public static XElement Parse(string xml) => Load(new StringReader(xml), CancellationToken.None);

    /// <summary>Loads a document from text as it is read (DTDs off, depth bounded, the deadline checked as it goes).</summary>
    public static XElement Load(TextReader text, CancellationToken ct)
    {
        try
        {
            using var reader = XmlReader.Create(text, Secure);
            return BoundedXml.Load(reader, XmlRpcReader.MaxDepth, keepWhitespace: false, ct);
        }
        catch (XmlException e)
        {
            throw new OneProtocolException($"OpenNebula sent a document that is not valid XML: {e.Message}");
        }
    }

    public static string? Text(this XElement e, string name) => e.Element(name)?.Value;

    public static string Str(this XElement e, string name) => e.Element(name)?.Value ?? "";

    public static int Int(this XElement e, string name, int fallback = -1) =>
        int.TryParse(e.Element(name)?.Value.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : fallback;

    public static long Long(this XElement e, string name, long fallback = -1) =>
        long.TryParse(e.Element(name)?.Value.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : fallback;

    public static int? OptInt(this XElement e, string name) =>
        int.TryParse(e.Element(name)?.Value.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var v) ? v : null;

    public static bool Yes(this XElement e, string name) =>
        string.Equals(e.Element(name)?.Value.Trim(), "YES", StringComparison.OrdinalIgnoreCase);

    public static IReadOnlyList<int> Ids(this XElement? e) =>
        e is null ? [] : [.. e.Elements("ID").Select(x => int.Parse(x.Value, CultureInfo.InvariantCulture))];

    /// <summary>The single attributes of a template element as a dictionary (vectors are left out).</summary>
    public static IReadOnlyDictionary<string, string> Attributes(this XElement? e) =>
        e is null
            ? new Dictionary<string, string>()
            : e.Elements().Where(x => !x.HasElements).GroupBy(x => x.Name.LocalName).ToDictionary(g => g.Key, g => g.First().Value);
}
