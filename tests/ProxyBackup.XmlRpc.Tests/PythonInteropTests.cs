using System.Net;
using System.Text.Json;
using ProxyBackup.TestSupport;
using ProxyBackup.XmlRpc.Server;

namespace ProxyBackup.XmlRpc.Tests;

/// <summary>Python's standard library as the other end of the wire, in both directions.</summary>
public class PythonInteropTests
{
    private static string Script(string name) => Path.Combine(AppContext.BaseDirectory, "python", name);

    [Fact]
    public async Task Our_client_talks_to_python_xmlrpc_server()
    {
        using var peer = ChildProcess.Start("python3", Script("peer_server.py"));
        var port = int.Parse(await peer.ReadLineAsync(TimeSpan.FromSeconds(20)), System.Globalization.CultureInfo.InvariantCulture);
        using var client = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = new Uri($"http://127.0.0.1:{port}/RPC2") });

        var all = Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(await client.CallAsync("all_types", []));
        Assert.Equal(42, all["int"]);
        Assert.Equal(-7, all["negative"]);
        Assert.Equal(true, all["bool"]);
        Assert.Equal("héllo <&> \"q\" 'a'", all["string"]);
        Assert.Equal(3.25, all["double"]);
        Assert.Equal(new DateTime(2025, 1, 2, 3, 4, 5), all["when"]);
        Assert.Equal(new byte[] { 0, 1, 255, (byte)'b', (byte)'i', (byte)'n' }, all["bytes"]);
        Assert.Null(all["nil"]);
        Assert.Equal("", all["empty"]);

        // What Python saw of our encoding, type by type (Python reads <i8> but cannot send one back).
        object?[] sent = [7, 1L << 40, true, "s", 1.5, new DateTime(2024, 2, 29, 23, 59, 59), new byte[] { 1, 2 }, null,
            new List<object?> { 1 }, new Dictionary<string, object?> { ["k"] = "v" }];
        var seen = Assert.IsAssignableFrom<IReadOnlyList<object?>>(await client.CallAsync("describe", [sent]));
        Assert.Equal(["int", "int", "boolean", "string", "double", "dateTime", "base64", "nil", new List<object?> { "int" },
            new Dictionary<string, object?> { ["k"] = "string" }], seen);

        var nested = new Dictionary<string, object?>
        {
            ["a"] = new List<object?> { 1, new Dictionary<string, object?> { ["b"] = new List<object?> { true, null, "ü" } } },
        };
        var echoed = Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(await client.CallAsync("echo", [nested]));
        var a = Assert.IsAssignableFrom<IReadOnlyList<object?>>(echoed["a"]);
        var b = Assert.IsAssignableFrom<IReadOnlyList<object?>>(Assert.IsAssignableFrom<IReadOnlyDictionary<string, object?>>(a[1])["b"]);
        Assert.Equal([true, null, "ü"], b);

        var large = Assert.IsType<string>(await client.CallAsync("big", [300_000]));
        Assert.Equal(300_000 * 5, large.Length);
        Assert.StartsWith("éx<&>éx<&>", large, StringComparison.Ordinal);

        var fault = await Assert.ThrowsAsync<XmlRpcFaultException>(() => client.CallAsync("fail", [13, "bad <thing>"]));
        Assert.Equal(13, fault.FaultCode);
        Assert.Equal("bad <thing>", fault.FaultString);
    }

    [Fact]
    public async Task Python_xmlrpc_client_talks_to_our_server()
    {
        await using var server = new XmlRpcHttpServer(IPAddress.Loopback, 0, (call, _) => Task.FromResult<object?>(call.MethodName switch
        {
            "echo" => call.Parameters.Count == 1 ? call.Parameters[0] : call.Parameters,
            "echo_i8" => 1L << 40,
            "types_seen" => call.Parameters.Select(XmlRpcTypes.Describe).ToList(),
            "fail" => throw new XmlRpcFaultException((int)call.Parameters[0]!, (string)call.Parameters[1]!),
            _ => throw new XmlRpcFaultException(XmlRpcFaultException.NoSuchMethod, $"Method {call.MethodName} not defined"),
        }));
        server.Start();
        using var peer = ChildProcess.Start("python3", Script("peer_client.py"), server.Endpoint.ToString());
        var line = await peer.ReadLineAsync(TimeSpan.FromSeconds(60));
        var results = JsonSerializer.Deserialize<Dictionary<string, JsonElement>>(line)!;
        Assert.Equal(14, results.Count);
        foreach (var (name, outcome) in results)
            Assert.True(outcome.ValueKind == JsonValueKind.True, $"{name}: {outcome}");
    }
}
