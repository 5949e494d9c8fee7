using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace ProxyBackup.Simulator;

/// <summary>
/// The proxy VM is a real QEMU process: attached disks are hot-plugged into it through its QMP
/// socket as libvirt does on a KVM host (blockdev-add of the image file, device_add of a
/// virtio-blk device; device_del, then blockdev-del once the guest has released the device), so
/// the appliance inside finds a real /dev/vdX. The machine needs a hot-pluggable PCI bus (pc, or
/// q35 with free pcie-root-ports).
/// </summary>
public sealed class QmpDiskBus(string socketPath, TimeSpan unplugTimeout) : IProxyDiskBus
{
    public string Description => $"hot-plugged into QEMU through QMP at {socketPath}";
    public bool ShowsOwnDisks => false;

    public SimDevice Expose(string backingFile, bool readOnly, int proxyVmId)
    {
        var device = new SimDevice { Name = "pb" + Guid.NewGuid().ToString("N")[..12], BackingFile = Path.GetFullPath(backingFile), ReadOnly = readOnly };
        using var qmp = QmpConnection.Open(socketPath);
        Plug(qmp, device);
        return device;
    }

    public void Reattach(SimDevice device)
    {
        using var qmp = QmpConnection.Open(socketPath);
        if (!Plugged(qmp, device)) Plug(qmp, device);
    }

    // The guest keeps its disks while the front-end is down, as a VM does when oned stops.
    public void Suspend(SimDevice device) { }

    public string? TryRelease(SimDevice device)
    {
        using var qmp = QmpConnection.Open(socketPath);
        if (Plugged(qmp, device))
        {
            qmp.Execute("device_del", new JsonObject { ["id"] = DeviceId(device) });
            // The guest acknowledges the unplug (ACPI/PCIe hot-plug); a guest that holds on times out.
            if (!qmp.WaitForEvent("DEVICE_DELETED", e => e["data"]?["device"]?.GetValue<string>() == DeviceId(device), unplugTimeout))
                return $"device in use in the guest (no unplug in {unplugTimeout.TotalSeconds:0} s)";
        }
        if (NodeExists(qmp, device)) qmp.Execute("blockdev-del", new JsonObject { ["node-name"] = NodeName(device) });
        return null;
    }

    public void Remove(SimDevice device)
    {
        // The VM is going away: its QEMU may already have exited, which removes the device too.
        try { TryRelease(device); }
        catch (Exception e) when (e is IOException or SocketException or QmpException or TimeoutException) { }
    }

    // QEMU's monitor serves one client at a time: every step of an operation shares one connection.
    private static void Plug(QmpConnection qmp, SimDevice device)
    {
        if (!NodeExists(qmp, device))
            qmp.Execute("blockdev-add", new JsonObject
            {
                ["driver"] = "raw", ["node-name"] = NodeName(device), ["read-only"] = device.ReadOnly,
                ["file"] = new JsonObject { ["driver"] = "file", ["filename"] = device.BackingFile, ["read-only"] = device.ReadOnly },
            });
        try
        {
            qmp.Execute("device_add", new JsonObject { ["driver"] = "virtio-blk-pci", ["id"] = DeviceId(device), ["drive"] = NodeName(device) });
        }
        catch (QmpException)
        {
            qmp.Execute("blockdev-del", new JsonObject { ["node-name"] = NodeName(device) });
            throw;
        }
    }

    private static string NodeName(SimDevice d) => d.Name + "-node";
    private static string DeviceId(SimDevice d) => d.Name;

    private static bool Plugged(QmpConnection qmp, SimDevice device) =>
        qmp.Execute("qom-list", new JsonObject { ["path"] = "/machine/peripheral" })!.AsArray()
            .Any(p => p?["name"]?.GetValue<string>() == DeviceId(device));

    private static bool NodeExists(QmpConnection qmp, SimDevice device) =>
        qmp.Execute("query-named-block-nodes", new JsonObject { ["flat"] = true })!.AsArray()
            .Any(n => n?["node-name"]?.GetValue<string>() == NodeName(device));
}

public sealed class QmpException(string message) : Exception(message);

/// <summary>One QMP session: greeting, qmp_capabilities, then commands whose replies may be preceded by events.</summary>
public sealed class QmpConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly StreamReader _reader;
    private readonly Stream _stream;
    private readonly List<JsonNode> _events = [];

    private QmpConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: false);
        _reader = new StreamReader(_stream, Encoding.UTF8);
    }

    public static QmpConnection Open(string socketPath)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        }
        catch (SocketException e)
        {
            socket.Dispose();
            throw new IOException($"Cannot reach QEMU's QMP socket {socketPath}: {e.Message}. Is the proxy VM's QEMU running with -qmp unix:{socketPath},server,nowait?", e);
        }
        var qmp = new QmpConnection(socket);
        qmp.Read(TimeSpan.FromSeconds(10)); // the greeting
        qmp.Execute("qmp_capabilities", null);
        return qmp;
    }

    public JsonNode? Execute(string command, JsonObject? arguments)
    {
        var request = new JsonObject { ["execute"] = command };
        if (arguments is not null) request["arguments"] = arguments;
        var bytes = Encoding.UTF8.GetBytes(request.ToJsonString() + "\n");
        _stream.Write(bytes);
        while (true)
        {
            var message = Read(TimeSpan.FromSeconds(30));
            if (message["event"] is not null) { _events.Add(message); continue; }
            if (message["error"] is { } error)
                throw new QmpException($"QEMU refused {command}: {error["desc"]?.GetValue<string>() ?? error.ToJsonString()}");
            return message["return"];
        }
    }

    public bool WaitForEvent(string name, Func<JsonNode, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_events.Any(e => e["event"]?.GetValue<string>() == name && match(e))) return true;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero) return false;
            try { _events.Add(Read(left)); }
            catch (TimeoutException) { return false; }
        }
    }

    private JsonNode Read(TimeSpan timeout)
    {
        _socket.ReceiveTimeout = (int)Math.Max(1, timeout.TotalMilliseconds);
        string? line;
        try { line = _reader.ReadLine(); }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            throw new TimeoutException("QEMU did not answer on QMP in time.", e);
        }
        return line is null
            ? throw new IOException("QEMU closed the QMP connection.")
            : JsonNode.Parse(line) ?? throw new IOException("QEMU sent an empty QMP message.");
    }

    public void Dispose()
    {
        _reader.Dispose();
        _stream.Dispose();
        _socket.Dispose();
    }
}
