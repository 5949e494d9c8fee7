using System.Net;
using ProxyBackup.XmlRpc;
using ProxyBackup.XmlRpc.Server;

namespace ProxyBackup.Simulator;

/// <summary>A running simulator: the cloud, its fault rules and its XML-RPC endpoint. Used by one-sim and by tests.</summary>
public sealed class SimServer : IAsyncDisposable
{
    private readonly XmlRpcHttpServer _http;

    private SimServer(SimCloud cloud, SimFaults faults, XmlRpcHttpServer http)
    {
        Cloud = cloud;
        Faults = faults;
        _http = http;
    }

    public SimCloud Cloud { get; }
    public SimFaults Faults { get; }
    public Uri Endpoint => _http.Endpoint;

    public static SimServer Start(SimOptions options, IPAddress address, int port, string password)
    {
        var cloud = new SimCloud(options);
        cloud.SetPassword("oneadmin", password);
        var faults = new SimFaults();
        var api = new SimApi(cloud, faults);
        var http = new XmlRpcHttpServer(address, port, api.HandleAsync);
        try
        {
            http.Start();
        }
        catch
        {
            cloud.Dispose();
            throw;
        }
        return new SimServer(cloud, faults, http);
    }

    public async ValueTask DisposeAsync()
    {
        await _http.DisposeAsync().ConfigureAwait(false);
        Cloud.Dispose();
    }
}
