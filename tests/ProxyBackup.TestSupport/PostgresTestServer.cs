using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A real PostgreSQL server for the tests: Debian's postgresql package, a cluster made by
/// <c>initdb</c> in a temporary folder, listening on 127.0.0.1 on a private port, stopped by its
/// PID when the test process exits. One per test process; each test takes a database of its own
/// (<see cref="NewDatabase"/>). As root it runs as the <c>postgres</c> user (PostgreSQL refuses
/// root). A server left by a test process that was killed is stopped by the next one.
/// </summary>
public sealed class PostgresTestServer
{
    private const string Prefix = "pb-postgres-";
    private static readonly Lazy<PostgresTestServer> Shared = new(Start);
    private static int _databases;

    private readonly Process _process;
    private readonly string _directory;

    private PostgresTestServer(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Port = port;
    }

    public int Port { get; }

    /// <summary>Why the tests that need PostgreSQL cannot run here, or null.</summary>
    public static string? Unavailable() =>
        BinDirectory() is null ? "PostgreSQL is not installed (scripts/test installs Debian's postgresql package)"
        : Environment.IsPrivilegedProcess && !File.Exists("/usr/bin/setpriv") ? "setpriv (util-linux) is missing: PostgreSQL cannot be started as its own user"
        : null;

    /// <summary>A new, empty database on the shared server; its connection string (user <c>pb</c>, no password).</summary>
    public static string NewDatabase()
    {
        var server = Shared.Value;
        var name = $"pb_{Environment.ProcessId}_{Interlocked.Increment(ref _databases)}";
        using (var c = new NpgsqlConnection(server.ConnectionString("postgres")))
        {
            c.Open();
            using var cmd = new NpgsqlCommand($"CREATE DATABASE {name};", c);
            cmd.ExecuteNonQuery();
        }
        return server.ConnectionString(name);
    }

    public string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = "pb", Database = database, Pooling = true, Timeout = 30 }.ConnectionString;

    private static string? BinDirectory() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql").Select(d => Path.Combine(d, "bin")).Where(d => File.Exists(Path.Combine(d, "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(Path.GetDirectoryName(d)), out var v) ? v : 0).FirstOrDefault()
            : null;

    private static PostgresTestServer Start()
    {
        if (Unavailable() is { } why) throw new InvalidOperationException(why);
        StopLeftovers();
        var bin = BinDirectory()!;
        var directory = TestServers.NewFolder(Prefix);
        var data = Path.Combine(directory, "data");
        if (Environment.IsPrivilegedProcess) Run("chown", "postgres:postgres", directory);
        Run(AsServerUser(Path.Combine(bin, "initdb"), "-D", data, "-U", "pb", "-A", "trust", "-E", "UTF8", "--no-sync"));
        var port = TestServers.FreePort();
        var command = AsServerUser(Path.Combine(bin, "postgres"), "-D", data, "-p", port.ToString(CultureInfo.InvariantCulture),
            "-k", directory, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=300");
        var (process, log) = TestServers.StartLogged(command[0], command[1..]);
        var server = new PostgresTestServer(process, directory, port);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Stop();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(90);
        while (true)
        {
            try
            {
                using var c = new NpgsqlConnection(server.ConnectionString("postgres"));
                c.Open();
                return server;
            }
            catch (NpgsqlException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(100);
            }
            catch (NpgsqlException e)
            {
                server.Stop();
                lock (log) throw new InvalidOperationException($"PostgreSQL did not start: {e.Message}\n{log}");
            }
        }
    }

    /// <summary>Stops the server by its PID (a fast shutdown: SIGINT) and removes its folder.</summary>
    private void Stop()
    {
        try
        {
            if (!_process.HasExited)
            {
                Process.Start("kill", ["-INT", _process.Id.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
                if (!_process.WaitForExit(30_000)) _process.Kill();
            }
        }
        catch (InvalidOperationException) { }
        TestServers.RemoveFolder(_directory);
    }

    /// <summary>Servers of test processes that were killed (their folder names a process that is gone): stopped by the PID in postmaster.pid.</summary>
    private static void StopLeftovers()
    {
        foreach (var directory in TestServers.Orphaned(Prefix))
        {
            var postmaster = Path.Combine(directory, "data", "postmaster.pid");
            if (File.Exists(postmaster) && int.TryParse(File.ReadLines(postmaster).First(), out var serverPid) && Directory.Exists($"/proc/{serverPid}"))
            {
                Process.Start("kill", ["-INT", serverPid.ToString(CultureInfo.InvariantCulture)])!.WaitForExit();
                for (var i = 0; i < 300 && Directory.Exists($"/proc/{serverPid}"); i++) Thread.Sleep(100);
            }
            TestServers.RemoveFolder(directory);
        }
    }

    /// <summary>The command line that runs <paramref name="program"/> as the postgres user when this process is root (setpriv execs it: its PID is the server's).</summary>
    private static string[] AsServerUser(string program, params string[] arguments) =>
        Environment.IsPrivilegedProcess ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", program, .. arguments] : [program, .. arguments];

    private static void Run(params string[] command)
    {
        using var p = Process.Start(new ProcessStartInfo(command[0]) { RedirectStandardOutput = true, RedirectStandardError = true }.WithArguments(command[1..]))!;
        var output = p.StandardOutput.ReadToEndAsync();
        var error = p.StandardError.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0) throw new InvalidOperationException($"{string.Join(' ', command)} failed ({p.ExitCode}): {error}{output.Result}");
    }
}

internal static class ProcessStartInfoArguments
{
    public static ProcessStartInfo WithArguments(this ProcessStartInfo info, IEnumerable<string> arguments)
    {
        foreach (var a in arguments) info.ArgumentList.Add(a);
        return info;
    }
}

/// <summary>A test that needs <see cref="PostgresTestServer"/>; skipped, with the reason, where it cannot run.</summary>
public sealed class PostgresFactAttribute : Xunit.FactAttribute
{
    public PostgresFactAttribute()
    {
        if (PostgresTestServer.Unavailable() is { } why) Skip = why;
    }
}
