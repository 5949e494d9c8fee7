using System.Security;
using System.Text;
using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>
/// Seeded fuzzing of what an endpoint can answer: truncations and byte flips of a real oned answer,
/// deep nesting, huge strings, entities and DTDs, binary junk, HTML pages and wrong types. The
/// decoder and the client must end every case with a value or their own typed, user-facing error:
/// never another exception, never a hang (the cases are few and small enough to run in seconds).
/// </summary>
public class HostileAnswerFuzzTests
{
    private const int Seed = 20261204;

    private static string Envelope(string value) =>
        $"<?xml version=\"1.0\"?><methodResponse><params><param><value>{value}</value></param></params></methodResponse>";

    private static string Success(string document) =>
        Envelope($"<array><data><value><boolean>1</boolean></value><value><string>{SecurityElement.Escape(document)}</string></value><value><i4>0</i4></value></data></array>");

    private static readonly string RealVm = File.ReadAllText(Fixtures.Path("vm_protected_running.xml"));

    private static readonly string[] WrongTypes =
    [
        "<int>abc</int>", "<i8>9223372036854775808</i8>", "<i4>2147483648</i4>", "<boolean>7</boolean>", "<double>1.2.3</double>",
        "<base64>***</base64>", "<dateTime.iso8601>yesterday</dateTime.iso8601>", "<struct><member><value><int>1</int></value></member></struct>",
        "<array><value><int>1</int></value></array>", "<nil>x</nil>", "<unknown>1</unknown>", "<array><data><value><boolean>1</boolean></value></data></array>",
        "<array><data><value><boolean>1</boolean></value><value><int>5</int></value></data></array>",
    ];

    /// <summary>One hostile answer per call of the generator, chosen and shaped by the seeded random source.</summary>
    public static byte[] HostileAnswer(Random rnd)
    {
        var real = Encoding.UTF8.GetBytes(Success(RealVm));
        switch (rnd.Next(10))
        {
            case 0: return real[..rnd.Next(real.Length)];
            case 1:
                var flipped = (byte[])real.Clone();
                for (var i = 0; i < 1 + rnd.Next(8); i++) flipped[rnd.Next(flipped.Length)] = (byte)rnd.Next(256);
                return flipped;
            case 2:
                var depth = rnd.Next(60, 20_000);
                return Encoding.UTF8.GetBytes(Envelope(string.Concat(Enumerable.Repeat("<array><data><value>", depth)) + "<int>1</int>" + string.Concat(Enumerable.Repeat("</value></data></array>", depth))));
            case 3: return Encoding.UTF8.GetBytes(Envelope($"<string>{new string('x', rnd.Next(1 << 20, 8 << 20))}</string>"));
            case 4:
                return Encoding.UTF8.GetBytes(rnd.Next(3) switch
                {
                    0 => "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>" + Envelope("<string>&b;</string>"),
                    1 => Envelope("<string>&undefined;</string>"),
                    _ => Envelope("<string>&#0;&#xD800;</string>"),
                });
            case 5:
                var junk = new byte[rnd.Next(1, 64 << 10)];
                rnd.NextBytes(junk);
                return junk;
            case 6: return Encoding.UTF8.GetBytes("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>");
            case 7: return Encoding.UTF8.GetBytes(Envelope(WrongTypes[rnd.Next(WrongTypes.Length)]));
            case 8: return Encoding.UTF8.GetBytes(Success(RealVm[..rnd.Next(RealVm.Length)]));
            default:
                var nested = rnd.Next(60, 5_000);
                return Encoding.UTF8.GetBytes(Success(string.Concat(Enumerable.Repeat("<VM>", nested)) + string.Concat(Enumerable.Repeat("</VM>", nested))));
        }
    }

    [Fact]
    public void The_decoder_answers_every_hostile_answer_with_a_value_or_its_own_error()
    {
        var rnd = new Random(Seed);
        var outcomes = new Dictionary<string, int>();
        for (var i = 0; i < 400; i++)
        {
            var answer = HostileAnswer(rnd);
            string outcome;
            try
            {
                XmlRpcReader.ParseResponse(new MemoryStream(answer), maxCharacters: 16 << 20);
                outcome = "value";
            }
            catch (XmlRpcException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                outcome = e.GetType().Name;
            }
            outcomes[outcome] = outcomes.GetValueOrDefault(outcome) + 1;
        }
        // The generator reached both ends: answers that decode and answers that are refused.
        Assert.True(outcomes.GetValueOrDefault("value") > 0 && outcomes.GetValueOrDefault(nameof(XmlRpcProtocolException)) > 0, string.Join(", ", outcomes));
    }

    [Fact]
    public async Task The_client_ends_every_hostile_answer_with_one_user_facing_error()
    {
        var rnd = new Random(Seed + 1);
        byte[] next = [];
        await using var endpoint = new ScriptedEndpoint(_ => ("200 OK", "text/xml", next));
        using var client = new OneClient(new OneClientOptions
        {
            Endpoint = endpoint.Uri, Credentials = new OneCredentials("oneadmin", "pw"), Retries = 0, CallTimeout = TimeSpan.FromSeconds(20),
        });
        for (var i = 0; i < 80; i++)
        {
            next = HostileAnswer(rnd);
            try
            {
                // A flip that spared the structure still decodes into a VM.
                Assert.False(string.IsNullOrEmpty((await client.VmInfoAsync(1)).Name));
            }
            catch (UserFacingException e)
            {
                Assert.False(string.IsNullOrWhiteSpace(e.Message));
                Assert.DoesNotContain("\n   at ", e.Message, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task An_answer_over_the_limit_is_refused_with_what_to_change()
    {
        var big = Encoding.UTF8.GetBytes(Success($"<VM><ID>1</ID><NAME>{new string('x', 2 << 20)}</NAME></VM>"));
        await using var endpoint = new ScriptedEndpoint(_ => ("200 OK", "text/xml", big));
        using var client = new OneClient(new OneClientOptions { Endpoint = endpoint.Uri, Credentials = new OneCredentials("oneadmin", "pw"), Retries = 0, MaxAnswerBytes = 1 << 20 });
        var e = await Assert.ThrowsAsync<XmlRpcProtocolException>(() => client.VmInfoAsync(1));
        Assert.Contains($"exceeds the limit of {1 << 20} bytes; if the front-end's pools are that large, raise the answer limit", e.Message, StringComparison.Ordinal);
        using var roomy = new OneClient(new OneClientOptions { Endpoint = endpoint.Uri, Credentials = new OneCredentials("oneadmin", "pw"), Retries = 0, MaxAnswerBytes = 4 << 20 });
        Assert.Equal(2 << 20, (await roomy.VmInfoAsync(1)).Name.Length);
    }

    /// <summary>
    /// A slow-loris server (headers, then a byte now and then, never the end) costs one deadline:
    /// the call is not asked again, although reads are otherwise retried.
    /// </summary>
    [Fact]
    public async Task A_slow_loris_server_costs_one_deadline_not_one_per_retry()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        using var stop = new CancellationTokenSource();
        var requests = 0;
        var trickle = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    var connection = await listener.AcceptTcpClientAsync(stop.Token);
                    Interlocked.Increment(ref requests);
                    _ = Task.Run(async () =>
                    {
                        using (connection)
                        {
                            var stream = connection.GetStream();
                            _ = await stream.ReadAsync(new byte[65536], stop.Token); // the request, whatever of it came first
                            await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 100000\r\n\r\n<"u8.ToArray(), stop.Token);
                            while (true)
                            {
                                await Task.Delay(100, stop.Token);
                                await stream.WriteAsync(" "u8.ToArray(), stop.Token);
                            }
                        }
                    });
                }
            }
            catch (Exception e) when (e is OperationCanceledException or System.Net.Sockets.SocketException or IOException) { }
        });
        using var client = new OneClient(new OneClientOptions
        {
            Endpoint = new Uri($"http://127.0.0.1:{((System.Net.IPEndPoint)listener.LocalEndpoint).Port}/RPC2"),
            Credentials = new OneCredentials("oneadmin", "pw"), Retries = 4, RetryDelay = TimeSpan.FromMilliseconds(10), CallTimeout = TimeSpan.FromSeconds(1),
        });
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() => client.VmInfoAsync(1));
        Assert.Contains("did not answer one.vm.info within 1 s (headers, body and parse together)", e.Message, StringComparison.Ordinal);
        Assert.Equal(1, Volatile.Read(ref requests));
        await stop.CancelAsync();
        listener.Stop();
        await trickle;
    }

    /// <summary>
    /// Waits share the client's poll budget: ten waits on a VM that stays in HOTPLUG for 2 s poll
    /// oned at most the budget's rate (each alone would poll a dozen times in that time).
    /// </summary>
    [Fact]
    public async Task Waits_of_many_jobs_share_one_budget_of_polls_per_second()
    {
        var hotplug = Encoding.UTF8.GetBytes(Success(RealVm.Replace("<LCM_STATE>3</LCM_STATE>", "<LCM_STATE>17</LCM_STATE>", StringComparison.Ordinal)));
        var polls = 0;
        await using var endpoint = new ScriptedEndpoint(_ =>
        {
            Interlocked.Increment(ref polls);
            return ("200 OK", "text/xml", hotplug);
        });
        using var client = new OneClient(new OneClientOptions { Endpoint = endpoint.Uri, Credentials = new OneCredentials("oneadmin", "pw"), Retries = 0, MaxPollsPerSecond = 5 });
        var waiter = new OneWaiter(client);
        var waits = Enumerable.Range(0, 10).Select(_ => Assert.ThrowsAsync<OneWaitTimeoutException>(() => waiter.VmSettledAsync(0, TimeSpan.FromSeconds(2))));
        await Task.WhenAll(waits);
        // The bucket's 5, then 5 a second for 2 s, and one refill's worth of rounding.
        Assert.InRange(Volatile.Read(ref polls), 1, 20);
    }
}
