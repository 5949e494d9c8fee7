using System.Collections;
using System.Globalization;
using System.Text;
using System.Xml;

namespace ProxyBackup.XmlRpc;

/// <summary>Serialises method calls, responses and faults to XML-RPC bytes (UTF-8, no BOM).</summary>
public static class XmlRpcWriter
{
    private static readonly XmlWriterSettings Settings = new()
    {
        Encoding = new UTF8Encoding(false),
        Indent = false,
        // Entitize keeps a CR inside a string value: a parser would otherwise fold CRLF to LF.
        NewLineHandling = NewLineHandling.Entitize,
        CheckCharacters = true,
    };

    public static byte[] MethodCall(string methodName, IReadOnlyList<object?> parameters)
    {
        ArgumentException.ThrowIfNullOrEmpty(methodName);
        return Write(w =>
        {
            w.WriteStartElement("methodCall");
            w.WriteElementString("methodName", methodName);
            w.WriteStartElement("params");
            foreach (var p in parameters)
            {
                w.WriteStartElement("param");
                WriteValue(w, p, 0);
                w.WriteEndElement();
            }
            w.WriteEndElement();
            w.WriteEndElement();
        });
    }

    public static byte[] Response(object? value) => Write(w =>
    {
        w.WriteStartElement("methodResponse");
        w.WriteStartElement("params");
        w.WriteStartElement("param");
        WriteValue(w, value, 0);
        w.WriteEndElement();
        w.WriteEndElement();
        w.WriteEndElement();
    });

    public static byte[] Fault(int code, string message) => Write(w =>
    {
        w.WriteStartElement("methodResponse");
        w.WriteStartElement("fault");
        WriteValue(w, new Dictionary<string, object?> { ["faultCode"] = code, ["faultString"] = message }, 0);
        w.WriteEndElement();
        w.WriteEndElement();
    });

    private static byte[] Write(Action<XmlWriter> body)
    {
        using var ms = new MemoryStream();
        using (var w = XmlWriter.Create(ms, Settings))
        {
            w.WriteStartDocument();
            try
            {
                body(w);
            }
            catch (ArgumentException e) when (e.Message.Contains("character", StringComparison.OrdinalIgnoreCase))
            {
                throw new ArgumentException("A string holds a character XML 1.0 cannot carry (a control character such as NUL); send such data as base64.", e);
            }
            w.WriteEndDocument();
        }
        return ms.ToArray();
    }

    private static void WriteValue(XmlWriter w, object? value, int depth)
    {
        if (depth > XmlRpcReader.MaxDepth)
            throw new ArgumentException($"Value nested deeper than {XmlRpcReader.MaxDepth} levels.");
        w.WriteStartElement("value");
        switch (value)
        {
            case null:
                w.WriteElementString("nil", null);
                break;
            case string s:
                w.WriteElementString("string", s);
                break;
            case bool b:
                w.WriteElementString("boolean", b ? "1" : "0");
                break;
            case int or short or sbyte or byte or ushort:
                w.WriteElementString("int", Convert.ToInt32(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                break;
            case Enum e:
                w.WriteElementString("int", Convert.ToInt32(e, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                break;
            case long or uint:
                w.WriteElementString("i8", Convert.ToInt64(value, CultureInfo.InvariantCulture).ToString(CultureInfo.InvariantCulture));
                break;
            case double or float:
                var d = Convert.ToDouble(value, CultureInfo.InvariantCulture);
                if (!double.IsFinite(d)) throw new ArgumentException("XML-RPC has no representation for NaN or infinity.");
                w.WriteElementString("double", d.ToString("R", CultureInfo.InvariantCulture));
                break;
            case DateTime dt:
                w.WriteElementString("dateTime.iso8601", dt.ToString("yyyyMMdd'T'HH':'mm':'ss", CultureInfo.InvariantCulture));
                break;
            case byte[] bytes:
                w.WriteElementString("base64", Convert.ToBase64String(bytes));
                break;
            case IEnumerable<KeyValuePair<string, object?>> map:
                w.WriteStartElement("struct");
                foreach (var (k, v) in map)
                {
                    w.WriteStartElement("member");
                    w.WriteElementString("name", k);
                    WriteValue(w, v, depth + 1);
                    w.WriteEndElement();
                }
                w.WriteEndElement();
                break;
            case IEnumerable list:
                w.WriteStartElement("array");
                w.WriteStartElement("data");
                foreach (var item in list) WriteValue(w, item, depth + 1);
                w.WriteEndElement();
                w.WriteEndElement();
                break;
            default:
                throw new ArgumentException($"Type {value.GetType().Name} has no XML-RPC mapping.");
        }
        w.WriteEndElement();
    }
}
