using System.Globalization;
using System.Xml;
using System.Xml.Linq;

namespace ProxyBackup.XmlRpc;

/// <summary>A parsed &lt;methodCall&gt;.</summary>
public sealed record XmlRpcCall(string MethodName, IReadOnlyList<object?> Parameters);

/// <summary>
/// Parses XML-RPC documents received from the network. DTDs are prohibited (no entity expansion,
/// no external resolution) and the document size is bounded by the caller.
/// </summary>
public static class XmlRpcReader
{
    public const int MaxDepth = 64;

    private static readonly string[] DateFormats =
    [
        "yyyyMMdd'T'HH':'mm':'ss", "yyyyMMdd'T'HH':'mm':'ssK", "yyyy-MM-dd'T'HH':'mm':'ss",
        "yyyy-MM-dd'T'HH':'mm':'ssK", "yyyyMMdd'T'HHmmss", "yyyy-MM-dd'T'HH':'mm':'ss.FFFFFFFK",
    ];

    public static XmlReaderSettings SecureSettings(long maxCharacters) => new()
    {
        DtdProcessing = DtdProcessing.Prohibit,
        XmlResolver = null,
        MaxCharactersInDocument = maxCharacters,
        MaxCharactersFromEntities = 1024,
        IgnoreComments = true,
        IgnoreProcessingInstructions = true,
        CloseInput = false,
    };

    /// <summary>Parses a &lt;methodResponse&gt;: returns the value, or throws <see cref="XmlRpcFaultException"/>.</summary>
    public static object? ParseResponse(Stream body, long maxCharacters = 1L << 30, CancellationToken ct = default)
    {
        var root = Load(body, maxCharacters, ct);
        if (root.Name.LocalName != "methodResponse")
            throw new XmlRpcProtocolException($"Expected <methodResponse>, got <{root.Name.LocalName}>.");
        var first = root.Elements().FirstOrDefault()
            ?? throw new XmlRpcProtocolException("Empty <methodResponse>.");
        switch (first.Name.LocalName)
        {
            case "fault":
                var fault = ParseValue(Single(first, "value"), 0) as IReadOnlyDictionary<string, object?>
                    ?? throw new XmlRpcProtocolException("A <fault> must hold a struct.");
                var code = fault.TryGetValue("faultCode", out var c) ? c : null;
                var text = fault.TryGetValue("faultString", out var s) ? s as string : null;
                if (code is not int and not long || text is null)
                    throw new XmlRpcProtocolException("A <fault> struct needs an integer faultCode and a string faultString.");
                throw new XmlRpcFaultException(Convert.ToInt32(code, CultureInfo.InvariantCulture), text);
            case "params":
                var param = Single(first, "param");
                return ParseValue(Single(param, "value"), 0);
            default:
                throw new XmlRpcProtocolException($"Unexpected <{first.Name.LocalName}> in <methodResponse>.");
        }
    }

    public static XmlRpcCall ParseCall(Stream body, long maxCharacters = 1L << 30)
    {
        var root = Load(body, maxCharacters, CancellationToken.None);
        if (root.Name.LocalName != "methodCall")
            throw new XmlRpcProtocolException($"Expected <methodCall>, got <{root.Name.LocalName}>.");
        var name = root.Element("methodName")?.Value.Trim();
        if (string.IsNullOrEmpty(name))
            throw new XmlRpcProtocolException("<methodCall> has no <methodName>.");
        var parameters = new List<object?>();
        var ps = root.Element("params");
        if (ps is not null)
            foreach (var p in ps.Elements())
            {
                if (p.Name.LocalName != "param") throw new XmlRpcProtocolException($"Unexpected <{p.Name.LocalName}> in <params>.");
                parameters.Add(ParseValue(Single(p, "value"), 0));
            }
        return new XmlRpcCall(name, parameters);
    }

    private static XElement Load(Stream body, long maxCharacters, CancellationToken ct)
    {
        try
        {
            using var reader = XmlReader.Create(body, SecureSettings(maxCharacters));
            return BoundedXml.Load(reader, MaxDepth, keepWhitespace: true, ct);
        }
        catch (XmlException e) when (e.Message.Contains("DTD", StringComparison.OrdinalIgnoreCase))
        {
            throw new XmlRpcProtocolException("The document contains a DTD (DOCTYPE), which is refused for safety.", e);
        }
        catch (XmlException e) when (e.Message.Contains("MaxCharactersInDocument", StringComparison.Ordinal) || e.Message.Contains("maximum", StringComparison.OrdinalIgnoreCase))
        {
            throw new XmlRpcProtocolException($"The document is larger than the limit of {maxCharacters} characters.", e);
        }
        catch (XmlException e)
        {
            throw new XmlRpcProtocolException($"Malformed XML (line {e.LineNumber}, position {e.LinePosition}): {e.Message}", e);
        }
    }

    private static XElement Single(XElement parent, string localName)
    {
        XElement? found = null;
        foreach (var e in parent.Elements())
        {
            if (e.Name.LocalName != localName)
                throw new XmlRpcProtocolException($"Unexpected <{e.Name.LocalName}> in <{parent.Name.LocalName}>, expected <{localName}>.");
            if (found is not null)
                throw new XmlRpcProtocolException($"More than one <{localName}> in <{parent.Name.LocalName}>.");
            found = e;
        }
        return found ?? throw new XmlRpcProtocolException($"<{parent.Name.LocalName}> is missing <{localName}>.");
    }

    private static object? ParseValue(XElement value, int depth)
    {
        if (depth > MaxDepth) throw new XmlRpcProtocolException($"Values nested deeper than {MaxDepth} levels.");
        if (value.Name.LocalName != "value") throw new XmlRpcProtocolException($"Expected <value>, got <{value.Name.LocalName}>.");
        var typed = value.Elements().ToList();
        if (typed.Count == 0) return value.Value; // untyped content is a string
        if (typed.Count > 1) throw new XmlRpcProtocolException("A <value> holds more than one typed element.");
        var t = typed[0];
        var text = t.Value;
        try
        {
            switch (t.Name.LocalName)
            {
                case "string": return text;
                case "int" or "i4" or "i2" or "i1": return int.Parse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                case "i8" or "biginteger": return long.Parse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
                case "boolean":
                    return text.Trim() switch
                    {
                        "1" => true,
                        "0" => false,
                        _ => throw new XmlRpcProtocolException($"<boolean> must be 0 or 1, got '{Clip(text)}'."),
                    };
                case "double" or "float": return double.Parse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture);
                case "dateTime.iso8601" or "dateTime":
                    return DateTime.ParseExact(text.Trim(), DateFormats, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal);
                case "base64": return Convert.FromBase64String(text);
                case "nil": return null;
                case "struct":
                    var map = new Dictionary<string, object?>(StringComparer.Ordinal);
                    foreach (var m in t.Elements())
                    {
                        if (m.Name.LocalName != "member") throw new XmlRpcProtocolException($"Unexpected <{m.Name.LocalName}> in <struct>.");
                        var name = m.Element("name")?.Value ?? throw new XmlRpcProtocolException("A <member> has no <name>.");
                        var v = m.Element("value") ?? throw new XmlRpcProtocolException($"Member '{Clip(name)}' has no <value>.");
                        map[name] = ParseValue(v, depth + 1);
                    }
                    return map;
                case "array":
                    var data = Single(t, "data");
                    return data.Elements().Select(v => ParseValue(v, depth + 1)).ToList();
                default:
                    throw new XmlRpcProtocolException($"Unknown XML-RPC type <{t.Name.LocalName}>.");
            }
        }
        catch (FormatException e)
        {
            throw new XmlRpcProtocolException($"Bad <{t.Name.LocalName}> value '{Clip(text)}'.", e);
        }
        catch (OverflowException e)
        {
            throw new XmlRpcProtocolException($"<{t.Name.LocalName}> value '{Clip(text)}' is out of range.", e);
        }
    }

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
