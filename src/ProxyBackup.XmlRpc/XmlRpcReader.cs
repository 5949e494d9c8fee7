using System.Globalization;
using System.Text;
using System.Xml;

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
    /// <param name="strings">
    /// Reads string values in place (a large document inside a string is then parsed as it
    /// arrives, never held as one string); null: every string is read whole.
    /// </param>
    public static object? ParseResponse(Stream body, long maxCharacters = 1L << 30, CancellationToken ct = default, XmlRpcStringReader? strings = null) =>
        Run(body, maxCharacters, ct, strings, parser =>
        {
            parser.Root("methodResponse");
            if (!parser.NextChild("methodResponse")) throw new XmlRpcProtocolException("Empty <methodResponse>.");
            object? result;
            switch (parser.Name)
            {
                case "fault":
                    parser.Only("fault", "value");
                    var fault = parser.Value(0, []) as IReadOnlyDictionary<string, object?>
                        ?? throw new XmlRpcProtocolException("A <fault> must hold a struct.");
                    parser.EndOnly("fault", "value");
                    var code = fault.TryGetValue("faultCode", out var c) ? c : null;
                    var text = fault.TryGetValue("faultString", out var f) ? f as string : null;
                    if (code is not int and not long || text is null)
                        throw new XmlRpcProtocolException("A <fault> struct needs an integer faultCode and a string faultString.");
                    parser.Finish("methodResponse");
                    throw new XmlRpcFaultException(Convert.ToInt32(code, CultureInfo.InvariantCulture), text);
                case "params":
                    parser.Only("params", "param");
                    parser.Only("param", "value");
                    result = parser.Value(0, []);
                    parser.EndOnly("param", "value");
                    parser.EndOnly("params", "param");
                    break;
                default:
                    throw new XmlRpcProtocolException($"Unexpected <{parser.Name}> in <methodResponse>.");
            }
            parser.Finish("methodResponse");
            return result;
        });

    public static XmlRpcCall ParseCall(Stream body, long maxCharacters = 1L << 30) =>
        Run(body, maxCharacters, CancellationToken.None, strings: null, parser =>
        {
            parser.Root("methodCall");
            string? name = null;
            var parameters = new List<object?>();
            while (parser.NextChild("methodCall"))
            {
                switch (parser.Name)
                {
                    case "methodName":
                        name = parser.Text("methodName").Trim();
                        break;
                    case "params":
                        while (parser.NextChild("params"))
                        {
                            if (parser.Name != "param") throw new XmlRpcProtocolException($"Unexpected <{parser.Name}> in <params>.");
                            parser.Only("param", "value");
                            parameters.Add(parser.Value(0, parameters));
                            parser.EndOnly("param", "value");
                        }
                        break;
                    default:
                        throw new XmlRpcProtocolException($"Unexpected <{parser.Name}> in <methodCall>.");
                }
            }
            if (string.IsNullOrEmpty(name)) throw new XmlRpcProtocolException("<methodCall> has no <methodName>.");
            parser.Finish("methodCall");
            return new XmlRpcCall(name, parameters);
        });

    private static T Run<T>(Stream body, long maxCharacters, CancellationToken ct, XmlRpcStringReader? strings, Func<ValueParser, T> parse)
    {
        try
        {
            using var reader = XmlReader.Create(body, SecureSettings(maxCharacters));
            return parse(new ValueParser(reader, maxCharacters, ct, strings));
        }
        catch (XmlException e)
        {
            throw Malformed(e, maxCharacters);
        }
    }

    internal static XmlRpcProtocolException Malformed(XmlException e, long maxCharacters)
    {
        if (e.Message.Contains("DTD", StringComparison.OrdinalIgnoreCase))
            return new XmlRpcProtocolException("The document contains a DTD (DOCTYPE), which is refused for safety.", e);
        if (e.Message.Contains("MaxCharactersInDocument", StringComparison.Ordinal) || e.Message.Contains("maximum", StringComparison.OrdinalIgnoreCase))
            return new XmlRpcProtocolException($"The document is larger than the limit of {maxCharacters} characters.", e);
        return new XmlRpcProtocolException($"Malformed XML (line {e.LineNumber}, position {e.LinePosition}): {e.Message}", e);
    }

    /// <summary>
    /// Reads XML-RPC values straight from the reader, one node at a time (no tree of the envelope):
    /// memory is what the values themselves take, and the deadline is checked every few thousand
    /// nodes. Each method starts on an element's start tag and ends on its end tag.
    /// </summary>
    private sealed class ValueParser(XmlReader r, long maxCharacters, CancellationToken ct, XmlRpcStringReader? strings)
    {
        private int _nodes;

        public string Name => r.LocalName;

        public long MaxCharacters => maxCharacters;

        /// <summary>The next node; the deadline is checked every few thousand.</summary>
        public bool Advance()
        {
            if ((++_nodes & 4095) == 0) ct.ThrowIfCancellationRequested();
            return r.Read();
        }

        /// <summary>Moves to the document's root element, which must be <paramref name="name"/>.</summary>
        public void Root(string name)
        {
            while (Advance() && r.NodeType != XmlNodeType.Element) { }
            if (r.NodeType != XmlNodeType.Element) throw new XmlException("The document has no root element.");
            if (r.LocalName != name) throw new XmlRpcProtocolException($"Expected <{name}>, got <{r.LocalName}>.");
        }

        /// <summary>Reads the rest of the document, so that a truncated or malformed tail is an error.</summary>
        public void Finish(string root)
        {
            var atRootEnd = r.Depth == 0 && (r.NodeType == XmlNodeType.EndElement || r.IsEmptyElement);
            if (!atRootEnd && NextChild(root)) throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <{root}>.");
            while (Advance()) { }
        }

        /// <summary>Moves to the next child element (true) or to the parent's end tag (false); only whitespace may lie between.</summary>
        public bool NextChild(string parent)
        {
            if (r.NodeType == XmlNodeType.Element && r.IsEmptyElement && r.LocalName == parent) return false;
            while (Advance())
            {
                switch (r.NodeType)
                {
                    case XmlNodeType.Element: return true;
                    case XmlNodeType.EndElement: return false;
                    case XmlNodeType.Whitespace or XmlNodeType.SignificantWhitespace: continue;
                    case XmlNodeType.Text or XmlNodeType.CDATA: throw new XmlRpcProtocolException($"Unexpected text in <{parent}>.");
                }
            }
            throw new XmlException($"The document ends inside <{parent}>.");
        }

        /// <summary>Moves to the single child of <paramref name="parent"/>, which must be <paramref name="child"/>.</summary>
        public void Only(string parent, string child)
        {
            if (!NextChild(parent)) throw new XmlRpcProtocolException($"<{parent}> is missing <{child}>.");
            if (r.LocalName != child) throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <{parent}>, expected <{child}>.");
        }

        /// <summary>After the single child: the parent must end here.</summary>
        public void EndOnly(string parent, string child)
        {
            if (NextChild(parent))
                throw new XmlRpcProtocolException(r.LocalName == child ? $"More than one <{child}> in <{parent}>." : $"Unexpected <{r.LocalName}> in <{parent}>, expected <{child}>.");
        }

        /// <summary>The text of an element that may hold only text.</summary>
        public string Text(string element)
        {
            if (r.IsEmptyElement) return "";
            var text = new StringBuilder();
            while (Advance())
            {
                switch (r.NodeType)
                {
                    case XmlNodeType.Text or XmlNodeType.CDATA or XmlNodeType.Whitespace or XmlNodeType.SignificantWhitespace:
                        text.Append(r.Value);
                        break;
                    case XmlNodeType.EndElement:
                        return text.ToString();
                    case XmlNodeType.Element:
                        throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <{element}>.");
                }
            }
            throw new XmlException($"The document ends inside <{element}>.");
        }

        /// <param name="earlier">The values before this one in its array (or the call's parameters).</param>
        public object? Value(int depth, IReadOnlyList<object?> earlier)
        {
            if (depth > MaxDepth) throw new XmlRpcProtocolException($"Values nested deeper than {MaxDepth} levels.");
            if (r.LocalName != "value") throw new XmlRpcProtocolException($"Expected <value>, got <{r.LocalName}>.");
            if (r.IsEmptyElement) return "";
            StringBuilder? untyped = null;
            var typed = false;
            object? result = null;
            while (Advance())
            {
                switch (r.NodeType)
                {
                    case XmlNodeType.EndElement:
                        return typed ? result : untyped?.ToString() ?? ""; // untyped content is a string
                    case XmlNodeType.Element:
                        if (typed) throw new XmlRpcProtocolException("A <value> holds more than one typed element.");
                        typed = true;
                        result = Typed(depth, earlier);
                        break;
                    case XmlNodeType.Text or XmlNodeType.CDATA or XmlNodeType.Whitespace or XmlNodeType.SignificantWhitespace:
                        if (!typed) (untyped ??= new StringBuilder()).Append(r.Value);
                        break;
                }
            }
            throw new XmlException("The document ends inside <value>.");
        }

        private object? Typed(int depth, IReadOnlyList<object?> earlier)
        {
            var type = r.LocalName;
            switch (type)
            {
                case "string" when strings is not null && !r.IsEmptyElement:
                    var text = new ElementText(this, r, type);
                    var value = strings(text, new XmlRpcValuePosition(depth, earlier));
                    text.Drain();
                    return value;
                case "struct":
                    var map = new Dictionary<string, object?>(StringComparer.Ordinal);
                    while (NextChild("struct"))
                    {
                        if (r.LocalName != "member") throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <struct>.");
                        var (name, member) = Member(depth);
                        map[name] = member;
                    }
                    return map;
                case "array":
                    Only("array", "data");
                    var items = new List<object?>();
                    while (NextChild("data")) items.Add(Value(depth + 1, items));
                    EndOnly("array", "data");
                    return items;
                case "nil":
                    Text(type);
                    return null;
            }
            var content = Text(type);
            try
            {
                return type switch
                {
                    "string" => content,
                    "int" or "i4" or "i2" or "i1" => int.Parse(content.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture),
                    "i8" or "biginteger" => long.Parse(content.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture),
                    "boolean" => content.Trim() switch
                    {
                        "1" => true,
                        "0" => false,
                        _ => throw new XmlRpcProtocolException($"<boolean> must be 0 or 1, got '{Clip(content)}'."),
                    },
                    "double" or "float" => double.Parse(content.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture),
                    "dateTime.iso8601" or "dateTime" =>
                        DateTime.ParseExact(content.Trim(), DateFormats, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal),
                    "base64" => Convert.FromBase64String(content),
                    _ => throw new XmlRpcProtocolException($"Unknown XML-RPC type <{type}>."),
                };
            }
            catch (FormatException e)
            {
                throw new XmlRpcProtocolException($"Bad <{type}> value '{Clip(content)}'.", e);
            }
            catch (OverflowException e)
            {
                throw new XmlRpcProtocolException($"<{type}> value '{Clip(content)}' is out of range.", e);
            }
        }

        private (string Name, object? Value) Member(int depth)
        {
            string? name = null;
            var hasValue = false;
            object? value = null;
            while (NextChild("member"))
            {
                switch (r.LocalName)
                {
                    case "name": name = Text("name"); break;
                    case "value": value = Value(depth + 1, []); hasValue = true; break;
                    default: throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <member>.");
                }
            }
            if (name is null) throw new XmlRpcProtocolException("A <member> has no <name>.");
            if (!hasValue) throw new XmlRpcProtocolException($"Member '{Clip(name)}' has no <value>.");
            return (name, value);
        }
    }

    /// <summary>The text of one element as a reader, straight from the document in chunks; an element inside is a protocol error.</summary>
    private sealed class ElementText(ValueParser parser, XmlReader r, string element) : TextReader
    {
        private bool _inText;
        private bool _ended;

        /// <summary>The envelope's own errors stay the envelope's, not the string reader's (which may be parsing XML itself).</summary>
        public override int Read(char[] buffer, int index, int count)
        {
            try { return ReadChunk(buffer, index, count); }
            catch (XmlException e) { throw Malformed(e, parser.MaxCharacters); }
        }

        private int ReadChunk(char[] buffer, int index, int count)
        {
            while (!_ended)
            {
                if (_inText)
                {
                    var n = r.ReadValueChunk(buffer, index, count);
                    if (n > 0) return n;
                    _inText = false;
                }
                if (!parser.Advance()) throw new XmlException($"The document ends inside <{element}>.");
                switch (r.NodeType)
                {
                    case XmlNodeType.Text or XmlNodeType.CDATA or XmlNodeType.Whitespace or XmlNodeType.SignificantWhitespace:
                        _inText = true;
                        break;
                    case XmlNodeType.EndElement:
                        _ended = true;
                        break;
                    case XmlNodeType.Element:
                        throw new XmlRpcProtocolException($"Unexpected <{r.LocalName}> in <{element}>.");
                }
            }
            return 0;
        }

        public override int Read() => throw new NotSupportedException("Read in blocks.");

        public override int Peek() => -1;

        /// <summary>Skips what the string's reader left unread (whitespace after a document).</summary>
        public void Drain()
        {
            var rest = new char[4096];
            while (Read(rest, 0, rest.Length) > 0) { }
        }
    }

    private static string Clip(string s) => s.Length <= 40 ? s : s[..40] + "…";
}

/// <summary>Where a string value sits: its depth (0: the result itself, 1: in the result's array) and the values before it in its array.</summary>
public sealed record XmlRpcValuePosition(int Depth, IReadOnlyList<object?> Earlier);

/// <summary>Reads a string value from its text as it arrives; returns what stands for the value.</summary>
public delegate object? XmlRpcStringReader(TextReader text, XmlRpcValuePosition position);
