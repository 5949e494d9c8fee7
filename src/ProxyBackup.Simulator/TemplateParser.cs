using System.Text;
using System.Xml;
using System.Xml.Linq;

namespace ProxyBackup.Simulator;

/// <summary>
/// Parses a template argument as oned does: XML when the first character is '&lt;', otherwise the
/// <c>NAME = "value"</c> / <c>NAME = [ A = "1", B = "2" ]</c> text syntax. Returns a TEMPLATE element.
/// </summary>
public static class TemplateParser
{
    public static XElement Parse(string text)
    {
        if (text.StartsWith('<')) return ParseXml(text);
        return ParseText(text);
    }

    private static XElement ParseXml(string text)
    {
        try
        {
            using var reader = XmlReader.Create(new StringReader(text), new XmlReaderSettings { DtdProcessing = DtdProcessing.Prohibit, XmlResolver = null });
            var root = XElement.Load(reader);
            var result = new XElement("TEMPLATE");
            foreach (var e in root.Elements())
            {
                var name = e.Name.LocalName.ToUpperInvariant();
                result.Add(e.HasElements
                    ? new XElement(name, e.Elements().Select(c => new XElement(c.Name.LocalName.ToUpperInvariant(), c.Value)))
                    : new XElement(name, e.Value));
            }
            return result;
        }
        catch (XmlException e)
        {
            throw new TemplateSyntaxException($"Parse error: {e.Message}");
        }
    }

    private static XElement ParseText(string text)
    {
        var result = new XElement("TEMPLATE");
        var p = new Cursor(text);
        while (true)
        {
            p.SkipBlanksAndComments();
            if (p.End) return result;
            var name = p.Name();
            p.SkipBlanks();
            p.Expect('=');
            p.SkipBlanks();
            if (p.Peek == '[')
            {
                p.Next();
                var vector = new XElement(name);
                while (true)
                {
                    p.SkipBlanksAndComments();
                    if (p.Peek == ']') { p.Next(); break; }
                    var sub = p.Name();
                    p.SkipBlanks();
                    p.Expect('=');
                    p.SkipBlanks();
                    vector.Add(new XElement(sub, p.Value(inVector: true)));
                    p.SkipBlanksAndComments();
                    if (p.Peek == ',') p.Next();
                }
                result.Add(vector);
            }
            else
            {
                result.Add(new XElement(name, p.Value(inVector: false)));
            }
        }
    }

    private sealed class Cursor(string text)
    {
        private int _i;
        public bool End => _i >= text.Length;
        public char Peek => End ? '\0' : text[_i];
        public void Next() => _i++;

        public void SkipBlanks()
        {
            while (!End && text[_i] is ' ' or '\t') _i++;
        }

        public void SkipBlanksAndComments()
        {
            while (!End)
            {
                if (char.IsWhiteSpace(text[_i])) _i++;
                else if (text[_i] == '#') { while (!End && text[_i] != '\n') _i++; }
                else return;
            }
        }

        public void Expect(char c)
        {
            if (Peek != c) throw new TemplateSyntaxException($"Parse error: syntax error, expected '{c}' at position {_i}.");
            _i++;
        }

        public string Name()
        {
            var start = _i;
            while (!End && (char.IsAsciiLetterOrDigit(text[_i]) || text[_i] == '_')) _i++;
            if (_i == start) throw new TemplateSyntaxException($"Parse error: syntax error, unexpected '{Peek}' at position {_i}.");
            return text[start.._i].ToUpperInvariant();
        }

        public string Value(bool inVector)
        {
            if (Peek == '"')
            {
                _i++;
                var sb = new StringBuilder();
                while (true)
                {
                    if (End) throw new TemplateSyntaxException("Parse error: unterminated string.");
                    var c = text[_i++];
                    if (c == '\\' && Peek == '"') { sb.Append('"'); _i++; continue; }
                    if (c == '"') return sb.ToString();
                    sb.Append(c);
                }
            }
            var start = _i;
            while (!End && text[_i] != '\n' && !(inVector && text[_i] is ',' or ']')) _i++;
            return text[start.._i].Trim();
        }
    }
}

public sealed class TemplateSyntaxException(string message) : Exception(message);
