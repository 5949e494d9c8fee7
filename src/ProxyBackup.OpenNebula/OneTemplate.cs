using System.Globalization;
using System.Xml.Linq;

namespace ProxyBackup.OpenNebula;

/// <summary>
/// Builds the template strings that allocate, attach and update take. Always the XML form: unlike
/// the text syntax (where only \" escapes and a trailing backslash breaks the quoting), XML carries
/// any value safely; oned takes XML when the first character is '&lt;'.
/// </summary>
public sealed class OneTemplate
{
    private readonly XElement _root;

    public OneTemplate() => _root = new XElement("TEMPLATE");

    private OneTemplate(XElement root) => _root = root;

    /// <summary>A copy of an existing template element (e.g. a saved VM's TEMPLATE) to edit.</summary>
    public static OneTemplate From(XElement template) => new(new XElement("TEMPLATE", template.Elements().Select(e => new XElement(e))));

    public XElement Root => _root;

    public OneTemplate Set(string name, object value)
    {
        CheckName(name);
        _root.Elements(name).Remove();
        _root.Add(new XElement(name, Format(value)));
        return this;
    }

    public OneTemplate AddVector(string name, IEnumerable<KeyValuePair<string, object>> attributes)
    {
        CheckName(name);
        var vector = new XElement(name);
        foreach (var (k, v) in attributes)
        {
            CheckName(k);
            vector.Add(new XElement(k, Format(v)));
        }
        _root.Add(vector);
        return this;
    }

    public OneTemplate Remove(string name)
    {
        _root.Elements(name).Remove();
        return this;
    }

    public override string ToString() => _root.ToString(SaveOptions.DisableFormatting);

    private static string Format(object value) => value switch
    {
        bool b => b ? "YES" : "NO",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    private static void CheckName(string name)
    {
        if (name.Length == 0 || !name.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            throw new ArgumentException($"'{name}' is not a valid template attribute name ([A-Za-z0-9_]+).");
    }

    /// <summary>The characters oned refuses in object names (PoolObjectSQL INVALID_NAME_CHARS).</summary>
    public static bool IsValidObjectName(string name) =>
        name.Length > 0 && name.IndexOfAny(['&', '|', ':', '\\', '"', ';', '/', '\'', '#', '{', '}', '$', '<', '>', '\t', '\r', '\n', '\v', '\f']) < 0;
}
