using System.Text;
using ProxyBackup.TestSupport;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.XmlRpc.Tests;

public class CodecTests
{
    private static object? RoundTrip(object? value)
    {
        var bytes = XmlRpcWriter.Response(value);
        return XmlRpcReader.ParseResponse(new MemoryStream(bytes));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void Int_round_trips(int v) => Assert.Equal(v, RoundTrip(v));

    [Theory]
    [InlineData(65_536)]
    [InlineData(65)]
    public void A_document_nested_deeper_than_the_limit_is_refused_before_it_is_built(int levels)
    {
        var xml = "<?xml version=\"1.0\"?><methodResponse><params><param><value>"
            + string.Concat(Enumerable.Repeat("<array><data><value>", levels)) + "<int>1</int>"
            + string.Concat(Enumerable.Repeat("</value></data></array>", levels)) + "</value></param></params></methodResponse>";
        var e = Assert.Throws<XmlRpcProtocolException>(() => XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(xml))));
        Assert.Contains($"nested deeper than {XmlRpcReader.MaxDepth} levels", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Whitespace_in_a_string_value_survives_the_bounded_loader()
    {
        var xml = "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data><value><string>  </string></value><value><string>a <![CDATA[<b>]]> c</string></value></data></array></value></param></params></methodResponse>";
        var values = Assert.IsAssignableFrom<IReadOnlyList<object?>>(XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(xml))));
        Assert.Equal(["  ", "a <b> c"], values);
    }

    [Fact]
    public void Long_travels_as_i8()
    {
        var bytes = XmlRpcWriter.Response(1L << 40);
        Assert.Contains("<i8>1099511627776</i8>", Encoding.UTF8.GetString(bytes));
        Assert.Equal(1L << 40, RoundTrip(1L << 40));
    }

    [Theory]
    [InlineData("")]
    [InlineData("plain")]
    [InlineData("<&>\"' ]]> entities")]
    [InlineData("non-ASCII: é ß 東京 🚀")]
    [InlineData("line\r\nbreaks\rand\ttabs  and  spaces ")]
    public void Strings_round_trip_exactly(string s) => Assert.Equal(s, RoundTrip(s));

    [Fact]
    public void Every_type_round_trips_nested()
    {
        var value = new Dictionary<string, object?>
        {
            ["int"] = 1, ["i8"] = -5L, ["bool"] = false, ["double"] = 0.1, ["nil"] = null,
            ["when"] = new DateTime(2025, 1, 2, 3, 4, 5, DateTimeKind.Utc), ["bytes"] = new byte[] { 0, 1, 255 },
            ["list"] = new List<object?> { 1, "two", new List<object?> { new Dictionary<string, object?> { ["deep"] = true } } },
            ["empty"] = new Dictionary<string, object?>(), ["emptylist"] = new List<object?>(),
        };
        var back = Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(RoundTrip(value));
        Assert.Equal(1, back["int"]);
        Assert.Equal(-5L, back["i8"]);
        Assert.Equal(false, back["bool"]);
        Assert.Equal(0.1, back["double"]);
        Assert.Null(back["nil"]);
        Assert.Equal(new DateTime(2025, 1, 2, 3, 4, 5), back["when"]);
        Assert.Equal(new byte[] { 0, 1, 255 }, back["bytes"]);
        var list = Assert.IsAssignableFrom<IReadOnlyList<object?>>(back["list"]);
        var inner = Assert.IsAssignableFrom<IReadOnlyList<object?>>(list[2]);
        Assert.Equal(true, Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(inner[0])["deep"]);
        Assert.Empty(Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(back["empty"]));
        Assert.Empty(Assert.IsAssignableFrom<IReadOnlyList<object?>>(back["emptylist"]));
    }

    [Fact]
    public void Untyped_value_is_a_string_with_its_whitespace()
    {
        var xml = "<methodResponse><params><param><value>  hi there </value></param></params></methodResponse>";
        Assert.Equal("  hi there ", XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(xml))));
    }

    [Fact]
    public void Method_call_round_trips()
    {
        var bytes = XmlRpcWriter.MethodCall("one.vm.info", ["oneadmin:pw", 42, true]);
        var call = XmlRpcReader.ParseCall(new MemoryStream(bytes));
        Assert.Equal("one.vm.info", call.MethodName);
        Assert.Equal(["oneadmin:pw", 42, true], call.Parameters);
    }

    [Fact]
    public void Fault_is_raised_with_code_and_text()
    {
        var bytes = XmlRpcWriter.Fault(-501, "Parameter that is supposed to be integer is not");
        var f = Assert.Throws<XmlRpcFaultException>(() => XmlRpcReader.ParseResponse(new MemoryStream(bytes)));
        Assert.Equal(-501, f.FaultCode);
        Assert.Equal("Parameter that is supposed to be integer is not", f.FaultString);
    }

    [Theory]
    [InlineData("wire_success_system_version.xml")]
    [InlineData("wire_failure_vm_info.xml")]
    [InlineData("wire_failure_auth.xml")]
    public void Parses_oned_wire_captures(string file)
    {
        using var s = File.OpenRead(Fixtures.Path(file));
        var array = Assert.IsAssignableFrom<IReadOnlyList<object?>>(XmlRpcReader.ParseResponse(s));
        if (array[0] is true)
        {
            Assert.Equal([true, "6.10.5", 0], array);
        }
        else
        {
            Assert.Equal(5, array.Count);
            Assert.IsType<int>(array[2]);
            Assert.Equal(-1L, array[4]); // the i8 that strict parsers choke on
        }
    }

    [Fact]
    public void Parses_oned_fault_capture()
    {
        using var s = File.OpenRead(Fixtures.Path("wire_fault_wrong_type.xml"));
        var f = Assert.Throws<XmlRpcFaultException>(() => XmlRpcReader.ParseResponse(s));
        Assert.Equal(-501, f.FaultCode);
    }

    [Theory]
    [InlineData("<methodResponse><params><param><value><int>1</int></value>", "Malformed")]
    [InlineData("<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><methodResponse><params><param><value>&lol2;</value></param></params></methodResponse>", "DTD")]
    [InlineData("<methodResponse><params><param><value><int>abc</int></value></param></params></methodResponse>", "Bad <int>")]
    [InlineData("<methodResponse><params><param><value><int>99999999999</int></value></param></params></methodResponse>", "out of range")]
    [InlineData("<methodResponse><params><param><value><boolean>yes</boolean></value></param></params></methodResponse>", "<boolean> must be 0 or 1")]
    [InlineData("<methodResponse><params><param><value><weird>1</weird></value></param></params></methodResponse>", "Unknown XML-RPC type")]
    [InlineData("<html><body>502 Bad Gateway</body></html>", "Expected <methodResponse>")]
    [InlineData("", "Malformed")]
    [InlineData("<methodResponse><fault><value><string>x</string></value></fault></methodResponse>", "must hold a struct")]
    public void Malformed_input_gives_a_typed_error(string xml, string expected)
    {
        var e = Assert.Throws<XmlRpcProtocolException>(() => XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(xml))));
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Deep_nesting_is_refused_not_a_stack_overflow()
    {
        var sb = new StringBuilder("<methodResponse><params><param>");
        for (var i = 0; i < 5000; i++) sb.Append("<value><array><data>");
        var e = Assert.Throws<XmlRpcProtocolException>(() => XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(sb.ToString()))));
        Assert.NotNull(e.Message);
    }

    [Fact]
    public void Document_size_limit_is_enforced()
    {
        var bytes = XmlRpcWriter.Response(new string('x', 10_000));
        var e = Assert.Throws<XmlRpcProtocolException>(() => XmlRpcReader.ParseResponse(new MemoryStream(bytes), maxCharacters: 1000));
        Assert.Contains("limit", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Control_characters_are_refused_with_advice()
    {
        var e = Assert.Throws<ArgumentException>(() => XmlRpcWriter.Response("a\0b"));
        Assert.Contains("base64", e.Message, StringComparison.Ordinal);
    }
}
