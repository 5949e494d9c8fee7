using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using ProxyBackup.Simulator;
using ProxyBackup.XmlRpc;

var root = new RootCommand("one-sim: an OpenNebula 6.10 front-end simulator speaking XML-RPC on /RPC2.");

// ---- serve ----------------------------------------------------------------------------------
var listen = new Option<string>("--listen") { Description = "Address and port to listen on (loopback only is advised).", DefaultValueFactory = _ => "127.0.0.1:2633" };
var data = new Option<string>("--data") { Description = "Directory for state.json, image and snapshot files, and the proxy's devices.", DefaultValueFactory = _ => "one-sim-data" };
var password = new Option<string?>("--password") { Description = "oneadmin's password (default: kept from the data directory, else generated and printed)." };
var passwordFile = new Option<string?>("--password-file") { Description = "Read oneadmin's password from this file instead of the command line." };
var seed = new Option<string>("--seed") { Description = "demo: create the demo cloud when the data directory is new; empty: create nothing.", DefaultValueFactory = _ => "demo" };
var diskMb = new Option<long>("--seed-disk-mb") { Description = "Size of the demo VMs' main disks, MiB.", DefaultValueFactory = _ => 256 };
var fleet = new Option<int>("--seed-fleet") { Description = "demo: also this many VMs fleet-001... with one disk of their own (label fleet).", DefaultValueFactory = _ => 0 };
var fleetDiskMb = new Option<long>("--seed-fleet-disk-mb") { Description = "Size of each fleet VM's disk, MiB.", DefaultValueFactory = _ => 1 };
var clusters = new Option<int>("--seed-clusters") { Description = "demo: spread the fleet's disks and the proxies over this many clusters, each with a host and an image datastore of its own.", DefaultValueFactory = _ => 1 };
var proxies = new Option<int>("--seed-proxies") { Description = "demo: this many proxy VMs (proxybackup, proxybackup-2...), for proxies sharing a catalog.", DefaultValueFactory = _ => 1 };
var opMs = new Option<int>("--op-ms") { Description = "How long each asynchronous operation stays in its transient state, ms.", DefaultValueFactory = _ => 300 };
var onedTimes = new Option<bool>("--oned-times") { Description = "Snapshots, save-as, hot-plugs and image operations take what a real oned 6.10.5 took (0.1 to 1.1 s); the rest --op-ms." };
var devices = new Option<SimDeviceMode>("--devices") { Description = "How the proxy VM sees attached disks: loop (real block devices), file, or auto.", DefaultValueFactory = _ => SimDeviceMode.Auto };
var proxyQmp = new Option<string?>("--proxy-qmp") { Description = "The proxy VM is the QEMU process with this QMP socket: attached disks are hot-plugged into it as virtio-blk devices (instead of --devices)." };
var fault = new Option<string[]>("--fault") { Description = "Fault rule, repeatable: METHOD[,nth=N][,rate=R][,times=N][,action=error|drop-before|drop-after|stuck|fail-async|delay][,code=N][,message=TEXT][,latency=MS]", AllowMultipleArgumentsPerToken = false };
var faultsFile = new Option<string?>("--faults") { Description = "JSON file of fault rules: {\"rules\": [{\"method\": ..., \"nth\": ..., \"action\": ...}]}." };
var serve = new Command("serve", "Run the simulator (the default command).") { listen, data, password, passwordFile, seed, diskMb, fleet, fleetDiskMb, proxies, clusters, opMs, onedTimes, devices, proxyQmp, fault, faultsFile };
foreach (var o in serve.Options) root.Options.Add(o);

async Task<int> Serve(ParseResult p, CancellationToken ct)
{
    var endpointText = p.GetValue(listen)!;
    var colon = endpointText.LastIndexOf(':');
    if (colon < 0 || !IPAddress.TryParse(endpointText[..colon].Trim('[', ']'), out var address) || !int.TryParse(endpointText[(colon + 1)..], out var port))
        return Fail($"--listen '{endpointText}' must be ADDRESS:PORT, e.g. 127.0.0.1:2633.");
    var options = new SimOptions
    {
        DataDirectory = Path.GetFullPath(p.GetValue(data)!),
        OperationTime = TimeSpan.FromMilliseconds(p.GetValue(opMs)),
        OperationTimes = p.GetValue(onedTimes) ? SimOptions.MeasuredOnedTimes : new Dictionary<SimOperation, TimeSpan>(),
        DeviceMode = p.GetValue(devices),
        ProxyQmpSocket = p.GetValue(proxyQmp) is { } qmp ? Path.GetFullPath(qmp) : null,
    };
    string? pw = p.GetValue(password);
    if (p.GetValue(passwordFile) is { } pf) pw = File.ReadAllText(pf).Trim();
    var generated = false;
    if (pw is null)
    {
        using var probe = new SimCloud(options);
        pw = probe.Password("oneadmin") is { Length: > 0 } kept ? kept : null;
    }
    if (pw is null)
    {
        pw = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
        generated = true;
    }
    List<FaultRule> rules;
    try
    {
        rules = [.. p.GetValue(fault)!.Select(FaultRule.Parse)];
        if (p.GetValue(faultsFile) is { } ff) rules.AddRange(FaultPlan.FromJson(File.ReadAllText(ff)).Rules);
    }
    catch (Exception e) when (e is FormatException or JsonException or IOException or ArgumentException)
    {
        return Fail($"Bad fault rule: {e.Message}");
    }
    await using var server = SimServer.Start(options, address, port, pw);
    server.Faults.Set(rules);
    if (p.GetValue(seed) == "demo" && server.Cloud.IsEmpty)
    {
        Console.Error.WriteLine($"Seeding the demo cloud ({p.GetValue(diskMb)} MiB disks) ...");
        server.Cloud.SeedDemo(p.GetValue(diskMb));
        if (p.GetValue(fleet) > 0 || p.GetValue(proxies) > 1) server.Cloud.SeedFleet(p.GetValue(fleet), p.GetValue(fleetDiskMb), Math.Max(0, p.GetValue(proxies) - 1), clusters: Math.Max(1, p.GetValue(clusters)));
    }
    Console.WriteLine($"one-sim {SimCloud.Version} listening on {server.Endpoint}");
    Console.WriteLine($"data: {options.DataDirectory}; proxy disks: {server.Cloud.ProxyDisks.Description}");
    if (generated) Console.WriteLine($"oneadmin password: {pw}");
    Console.Out.Flush();
    var stop = new TaskCompletionSource();
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; stop.TrySetResult(); });
    using var reg = ct.Register(() => stop.TrySetResult());
    await stop.Task;
    Console.WriteLine("one-sim stopped.");
    return 0;
}
serve.SetAction(Serve);
root.SetAction(Serve);
root.Subcommands.Add(serve);

// ---- client-side helpers --------------------------------------------------------------------
var endpoint = new Option<string>("--endpoint") { Description = "The simulator's XML-RPC URL.", DefaultValueFactory = _ => "http://127.0.0.1:2633/RPC2" };
var user = new Option<string>("--user") { DefaultValueFactory = _ => "oneadmin" };
var secret = new Option<string?>("--password") { Description = "Password (default: $ONE_PASSWORD)." };
var vm = new Option<int>("--vm") { Required = true };
var disk = new Option<int>("--disk") { DefaultValueFactory = _ => 0 };
var blocks = new Option<int>("--blocks") { Description = "How many blocks to overwrite with random data.", DefaultValueFactory = _ => 64 };
var blockSize = new Option<int>("--block-size") { DefaultValueFactory = _ => 65536 };
var mutateSeed = new Option<int>("--seed") { DefaultValueFactory = _ => 7 };
var mutate = new Command("mutate", "Write random blocks at random offsets of a VM's disk, as a running guest would.") { endpoint, user, secret, vm, disk, blocks, blockSize, mutateSeed };
mutate.SetAction(async (p, ct) => await Call(p, "sim.vm.mutate", [p.GetValue(vm), p.GetValue(disk), p.GetValue(blocks), p.GetValue(blockSize), p.GetValue(mutateSeed)], ct));
root.Subcommands.Add(mutate);
var inventory = new Command("inventory", "Print what the simulated cloud holds (images, snapshots, proxy disks) as JSON.") { endpoint, user, secret };
inventory.SetAction(async (p, ct) => await Call(p, "sim.inventory", [], ct));
root.Subcommands.Add(inventory);

async Task<int> Call(ParseResult p, string method, object?[] args, CancellationToken ct)
{
    var pw = p.GetValue(secret) ?? Environment.GetEnvironmentVariable("ONE_PASSWORD");
    if (string.IsNullOrEmpty(pw)) return Fail("Give the password with --password or $ONE_PASSWORD.");
    using var client = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = new Uri(p.GetValue(endpoint)!) });
    try
    {
        var reply = (IReadOnlyList<object?>)(await client.CallAsync(method, [$"{p.GetValue(user)}:{pw}", .. args], ct))!;
        if (reply[0] is not true) return Fail((string)reply[1]!);
        Console.WriteLine(JsonSerializer.Serialize(reply[1]));
        return 0;
    }
    catch (XmlRpcException e)
    {
        return Fail(e.Message);
    }
}

static int Fail(string message)
{
    Console.Error.WriteLine($"one-sim: {message}");
    return 2;
}

return await root.Parse(args).InvokeAsync();
