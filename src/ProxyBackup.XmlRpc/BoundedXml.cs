using System.Xml;
using System.Xml.Linq;

namespace ProxyBackup.XmlRpc;

/// <summary>
/// Builds an element tree from a reader, refusing documents nested deeper than a limit: a hostile
/// endpoint's 64 k levels of nesting cost the runtime's own loader time that grows faster than the
/// document, outside any call timeout. Real answers (XML-RPC values, oned's documents) stay far
/// below the limit.
/// </summary>
public static class BoundedXml
{
    /// <summary>Loads the document's root element.</summary>
    /// <param name="keepWhitespace">Keep whitespace-only text (in XML-RPC it may be a string value).</param>
    /// <param name="ct">Checked every few thousand nodes: parsing a large answer stays under the call's deadline.</param>
    public static XElement Load(XmlReader reader, int maxDepth, bool keepWhitespace, CancellationToken ct = default)
    {
        XElement? root = null;
        var open = new Stack<XElement>();
        var nodes = 0;
        while (reader.Read())
        {
            if ((++nodes & 4095) == 0) ct.ThrowIfCancellationRequested();
            switch (reader.NodeType)
            {
                case XmlNodeType.Element:
                    if (open.Count >= maxDepth) throw new XmlException($"The document is nested deeper than {maxDepth} levels.");
                    var element = new XElement(XName.Get(reader.LocalName, reader.NamespaceURI));
                    if (reader.HasAttributes)
                        while (reader.MoveToNextAttribute())
                            if (!reader.Name.StartsWith("xmlns", StringComparison.Ordinal)) element.SetAttributeValue(XName.Get(reader.LocalName, reader.NamespaceURI), reader.Value);
                    reader.MoveToElement();
                    if (open.TryPeek(out var parent)) parent.Add(element);
                    else root = root is null ? element : throw new XmlException("The document has more than one root element.");
                    if (!reader.IsEmptyElement) open.Push(element);
                    break;
                case XmlNodeType.EndElement:
                    open.Pop();
                    break;
                case XmlNodeType.Text or XmlNodeType.CDATA:
                case XmlNodeType.Whitespace or XmlNodeType.SignificantWhitespace when keepWhitespace:
                    if (open.TryPeek(out var holder)) holder.Add(new XText(reader.Value));
                    break;
            }
        }
        return root ?? throw new XmlException("The document has no root element.");
    }
}
