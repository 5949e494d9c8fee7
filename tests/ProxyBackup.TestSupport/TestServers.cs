using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace ProxyBackup.TestSupport;

/// <summary>
/// What the servers a test process starts (PostgreSQL, S3) share: a temporary folder marked with the
/// test process's PID, so that the next test process stops and removes those of one that was killed;
/// a free port on 127.0.0.1; a started process whose output is kept for the error it may have to tell.
/// </summary>
internal static class TestServers
{
    private const string OwnerFile = "test-process";

    /// <summary>A new folder named <paramref name="prefix"/>..., marked as this test process's.</summary>
    public static string NewFolder(string prefix)
    {
        var directory = Directory.CreateTempSubdirectory(prefix).FullName;
        File.WriteAllText(Path.Combine(directory, OwnerFile), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        return directory;
    }

    /// <summary>The folders of this prefix whose test process is gone (killed before it could stop its server).</summary>
    public static IEnumerable<string> Orphaned(string prefix) =>
        Directory.GetDirectories(Path.GetTempPath(), prefix + "*").Where(directory =>
            !(File.Exists(Path.Combine(directory, OwnerFile)) && int.TryParse(File.ReadAllText(Path.Combine(directory, OwnerFile)), out var pid) && Directory.Exists($"/proc/{pid}")));

    public static void RemoveFolder(string directory)
    {
        try { Directory.Delete(directory, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Starts a server process, its standard output and error kept in the returned log.</summary>
    public static (Process Process, StringBuilder Log) StartLogged(string program, IEnumerable<string> arguments)
    {
        var process = Process.Start(new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true }.WithArguments(arguments))!;
        var log = new StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        return (process, log);
    }
}
