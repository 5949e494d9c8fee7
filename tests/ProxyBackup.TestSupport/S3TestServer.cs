using System.Diagnostics;
using System.Globalization;
using System.Net.Http;
using System.Net.Sockets;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A real S3 server for the tests, on 127.0.0.1 and a private port, its data in a temporary folder,
/// stopped by its PIDs when the test process exits; one per test process, a bucket per test
/// (<see cref="NewLocation"/>). Ceph's radosgw on a one-node cluster (scripts/s3-radosgw; Debian's
/// Ceph packages, which scripts/test installs) where it is installed; else s3rver (npm,
/// scripts/install-s3rver), a Node.js implementation of the S3 API. $PROXYBACKUP_TEST_S3 (radosgw or
/// s3rver) chooses one.
/// </summary>
public sealed class S3TestServer
{
    private const string Prefix = "pb-s3-";
    private static readonly Lazy<S3TestServer> Shared = new(Start);
    private static int _buckets;

    private readonly Process? _s3rver;
    private readonly string _directory;

    private S3TestServer(string kind, Process? s3rver, string directory, Uri endpoint, string accessKey, string secret)
    {
        Kind = kind;
        _s3rver = s3rver;
        _directory = directory;
        Endpoint = endpoint;
        (Key, Secret) = (accessKey, secret);
    }

    /// <summary>Which server runs: radosgw or s3rver.</summary>
    public string Kind { get; }
    public Uri Endpoint { get; }
    private string Key { get; }
    private string Secret { get; }

    /// <summary>The access key the server knows (s3rver has one fixed account).</summary>
    public static string AccessKeyId => Shared.Value.Key;
    public static string SecretAccessKey => Shared.Value.Secret;

    private static readonly Lazy<(string Key, string Secret)?> Reader = new(() =>
    {
        var server = Shared.Value;
        if (server.Kind != "radosgw") return null;
        var (code, _, error) = ChildProcess.Run(RadosgwScript()!, "user", Path.Combine(server._directory, "cluster"), "reader", "pbtestreader", "pbtestreadersecret");
        return code == 0 ? ("pbtestreader", "pbtestreadersecret") : throw new InvalidOperationException($"radosgw-admin could not make a second user: {error}");
    });

    /// <summary>A second account (user "reader"), which a bucket policy can allow to read only; null where the server has one account (s3rver).</summary>
    public static (string Key, string Secret)? ReaderCredentials() => Reader.Value;

    /// <summary>Whether the server chosen here has accounts of its own (radosgw), without starting it.</summary>
    public static bool HasAccounts => Choice() == "radosgw";

    /// <summary>Why the S3 tests cannot run here, or null.</summary>
    public static string? Unavailable() =>
        Choice() is null ? "no S3 server is installed: neither Ceph's radosgw (scripts/s3-radosgw install) nor s3rver (scripts/install-s3rver); scripts/test installs both" : null;

    /// <summary>A location in a bucket of its own (created by the repository's init): <c>s3:http://127.0.0.1:PORT/BUCKET/PREFIX</c>.</summary>
    public static string NewLocation(string prefix = "repo") =>
        $"s3:{Shared.Value.Endpoint.ToString().TrimEnd('/')}/pb-{Environment.ProcessId}-{Interlocked.Increment(ref _buckets)}/{prefix}";

    private static string? SourceRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ProxyBackup.sln"))) return dir.FullName;
        return null;
    }

    private static string? RadosgwScript() =>
        SourceRoot() is { } root && File.Exists("/usr/bin/radosgw") && File.Exists("/usr/bin/ceph-osd") && File.Exists(Path.Combine(root, "scripts", "s3-radosgw"))
            ? Path.Combine(root, "scripts", "s3-radosgw") : null;

    private static string? S3rver() =>
        SourceRoot() is { } root && File.Exists(Path.Combine(root, ".tools", "s3rver", "node_modules", ".bin", "s3rver"))
            ? Path.Combine(root, ".tools", "s3rver", "node_modules", ".bin", "s3rver") : null;

    /// <summary>The server to start: the one asked for, else radosgw, else s3rver; null when none is there.</summary>
    private static string? Choice() => Environment.GetEnvironmentVariable("PROXYBACKUP_TEST_S3") switch
    {
        "s3rver" => S3rver() is null ? null : "s3rver",
        "radosgw" => RadosgwScript() is null ? null : "radosgw",
        _ => RadosgwScript() is not null ? "radosgw" : S3rver() is not null ? "s3rver" : null,
    };

    private static S3TestServer Start()
    {
        var kind = Choice() ?? throw new InvalidOperationException(Unavailable());
        StopLeftovers();
        var directory = TestServers.NewFolder(Prefix);
        File.WriteAllText(Path.Combine(directory, "kind"), kind);
        var server = kind == "radosgw" ? StartRadosgw(directory) : StartS3rver(directory);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.Stop();
        return server;
    }

    private static S3TestServer StartRadosgw(string directory)
    {
        var data = Path.Combine(directory, "cluster");
        var (code, output, error) = ChildProcess.Run(RadosgwScript()!, "start", data, "0", "pbtestaccess", "pbtestsecret");
        if (code != 0) throw new InvalidOperationException($"radosgw did not start ({code}): {error}");
        return new S3TestServer("radosgw", null, directory, new Uri(output.Trim()), "pbtestaccess", "pbtestsecret");
    }

    private static S3TestServer StartS3rver(string directory)
    {
        Directory.CreateDirectory(Path.Combine(directory, "data"));
        var port = TestServers.FreePort();
        var (process, log) = TestServers.StartLogged(S3rver()!, ["-d", Path.Combine(directory, "data"), "-a", "127.0.0.1", "-p", port.ToString(CultureInfo.InvariantCulture), "--silent", "--no-vhost-buckets"]);
        File.WriteAllText(Path.Combine(directory, "server-pid"), process.Id.ToString(CultureInfo.InvariantCulture));
        // s3rver's one account.
        var server = new S3TestServer("s3rver", process, directory, new Uri($"http://127.0.0.1:{port}"), "S3RVER", "S3RVER");
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
        if (_s3rver is null) StopRadosgw(_directory);
        else
        {
            try
            {
                if (!_s3rver.HasExited)
                {
                    _s3rver.Kill();
                    _s3rver.WaitForExit(10_000);
                }
            }
            catch (InvalidOperationException) { }
        }
        TestServers.RemoveFolder(_directory);
    }

    private static void StopRadosgw(string directory)
    {
        if (RadosgwScript() is { } script && Directory.Exists(Path.Combine(directory, "cluster"))) ChildProcess.Run(script, "stop", Path.Combine(directory, "cluster"));
    }

    /// <summary>Servers of test processes that were killed (their folder names a process that is gone): stopped by their recorded PIDs.</summary>
    private static void StopLeftovers()
    {
        foreach (var directory in TestServers.Orphaned(Prefix))
        {
            StopRadosgw(directory);
            var server = Path.Combine(directory, "server-pid");
            if (File.Exists(server) && int.TryParse(File.ReadAllText(server), out var serverPid) && Directory.Exists($"/proc/{serverPid}"))
            {
                try { Process.GetProcessById(serverPid).Kill(); }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException) { }
            }
            TestServers.RemoveFolder(directory);
        }
    }
}

/// <summary>A test that needs a second account on the S3 server (<see cref="S3TestServer.ReaderCredentials"/>): skipped where the server has one (s3rver).</summary>
public sealed class S3TwoAccountsFactAttribute : Xunit.FactAttribute
{
    public S3TwoAccountsFactAttribute()
    {
        if (S3TestServer.Unavailable() is { } why) Skip = why;
        else if (!S3TestServer.HasAccounts) Skip = "the S3 test server here is s3rver, which has one account: a read-only key needs radosgw (scripts/s3-radosgw install)";
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
