using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Net.Sockets;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A real S3 server for the tests, listening on 127.0.0.1 on a private port, its data in a temporary
/// folder, stopped by its PID when the test process exits; one per test process, a bucket per test
/// (<see cref="NewLocation"/>). The server is s3rver (npm; scripts/test installs it into
/// <c>.tools/s3rver</c>): a Node.js implementation of the S3 REST API that checks SigV4 signatures
/// and keeps objects as files (docs/operations.md, "A repository on S3", says why not radosgw here).
/// </summary>
public sealed class S3TestServer
{
    /// <summary>s3rver's one account.</summary>
    public const string AccessKeyId = "S3RVER";
    public const string SecretAccessKey = "S3RVER";

    private const string Prefix = "pb-s3rver-";
    private static readonly Lazy<S3TestServer> Shared = new(Start);
    private static int _buckets;

    private readonly Process _process;
    private readonly string _directory;

    private S3TestServer(Process process, string directory, int port)
    {
        _process = process;
        _directory = directory;
        Endpoint = new Uri($"http://127.0.0.1:{port}");
    }

    public Uri Endpoint { get; }

    /// <summary>Where the objects are: one folder per bucket, a file (and a metadata file) per object, for tests that damage one.</summary>
    public static string DataDirectory => Path.Combine(Shared.Value._directory, "data");

    /// <summary>Why the S3 tests cannot run here, or null.</summary>
    public static string? Unavailable() =>
        Executable() is null ? "s3rver is not installed (scripts/test installs it with npm into .tools/s3rver)"
        : !File.Exists("/usr/bin/node") && !File.Exists("/usr/local/bin/node") ? "Node.js is missing: s3rver cannot run"
        : null;

    /// <summary>A location in a bucket of its own (created by the repository's init): <c>s3:http://127.0.0.1:PORT/BUCKET/PREFIX</c>.</summary>
    public static string NewLocation(string prefix = "repo") =>
        $"s3:{Shared.Value.Endpoint.ToString().TrimEnd('/')}/pb-{Environment.ProcessId}-{Interlocked.Increment(ref _buckets)}/{prefix}";

    private static string? Executable()
    {
        if (Environment.GetEnvironmentVariable("PROXYBACKUP_S3RVER") is { Length: > 0 } configured) return File.Exists(configured) ? configured : null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ProxyBackup.sln")))
            {
                var bin = Path.Combine(dir.FullName, ".tools", "s3rver", "node_modules", ".bin", "s3rver");
                return File.Exists(bin) ? bin : null;
            }
        return null;
    }

    private static S3TestServer Start()
    {
        if (Unavailable() is { } why) throw new InvalidOperationException(why);
        StopLeftovers();
        var directory = Directory.CreateTempSubdirectory(Prefix).FullName;
        File.WriteAllText(Path.Combine(directory, "test-process"), Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
        Directory.CreateDirectory(Path.Combine(directory, "data"));
        var port = FreePort();
        var process = Process.Start(new ProcessStartInfo(Executable()!) { RedirectStandardOutput = true, RedirectStandardError = true }
            .WithArguments(["-d", Path.Combine(directory, "data"), "-a", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), "--silent", "--no-vhost-buckets"]))!;
        File.WriteAllText(Path.Combine(directory, "server-pid"), process.Id.ToString(CultureInfo.InvariantCulture));
        var log = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        var server = new S3TestServer(process, directory, port);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Stop();
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                // Any HTTP answer (403 without a signature) says it listens.
                using var answer = http.GetAsync(server.Endpoint).GetAwaiter().GetResult();
                return server;
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline && !process.HasExited)
            {
                Thread.Sleep(100);
            }
            catch (HttpRequestException e)
            {
                server.Stop();
                lock (log) throw new InvalidOperationException($"s3rver did not start: {e.Message}\n{log}");
            }
        }
    }

    private void Stop()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException) { }
        try { Directory.Delete(_directory, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }

    /// <summary>Servers of test processes that were killed (their folder names a process that is gone): stopped by the PID recorded beside.</summary>
    private static void StopLeftovers()
    {
        foreach (var directory in Directory.GetDirectories(Path.GetTempPath(), Prefix + "*"))
        {
            var owner = Path.Combine(directory, "test-process");
            if (File.Exists(owner) && int.TryParse(File.ReadAllText(owner), out var pid) && Directory.Exists($"/proc/{pid}")) continue;
            var server = Path.Combine(directory, "server-pid");
            if (File.Exists(server) && int.TryParse(File.ReadAllText(server), out var serverPid) && Directory.Exists($"/proc/{serverPid}"))
            {
                try { Process.GetProcessById(serverPid).Kill(); }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException) { }
            }
            try { Directory.Delete(directory, recursive: true); }
            catch (IOException) { }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>A test that needs the S3 server: skipped, with the reason, where it cannot run.</summary>
public sealed class S3FactAttribute : Xunit.FactAttribute
{
    public S3FactAttribute()
    {
        if (S3TestServer.Unavailable() is { } why) Skip = why;
    }
}
