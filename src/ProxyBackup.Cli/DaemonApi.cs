using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using ProxyBackup.Scheduler;

namespace ProxyBackup.Cli;

/// <summary>
/// The local channel between the CLI/TUI and the running daemon: a Unix socket only root can use
/// (mode 0600 in a 0700 directory), one JSON request per line, one JSON answer per line.
/// Operations: status, backup (queue a VM ahead of scheduled work), cancel.
/// </summary>
internal sealed class DaemonApi(string path, PolicyRunner runner, ILogger logger) : IAsyncDisposable
{
    private readonly DateTimeOffset _since = DateTimeOffset.UtcNow;
    private readonly Socket _listener = new(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private Task? _loop;

    public void Start()
    {
        var dir = Path.GetDirectoryName(path)!;
        Directory.CreateDirectory(dir);
        File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        // Bound and listening under a staging name first: the socket appears at its path only with
        // its final mode, and every client that finds it is answered. A socket left at the path by a
        // killed daemon is replaced by the rename.
        var staging = path + ".new";
        if (File.Exists(staging)) File.Delete(staging);
        _listener.Bind(new UnixDomainSocketEndPoint(staging));
        File.SetUnixFileMode(staging, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        _listener.Listen(8);
        File.Move(staging, path, overwrite: true);
        _loop = Task.Run(AcceptAsync);
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listener.AcceptAsync(_stop.Token).ConfigureAwait(false); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket client)
    {
        using var stream = new NetworkStream(client, ownsSocket: true);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        try
        {
            string? line;
            while ((line = await reader.ReadLineAsync(_stop.Token).ConfigureAwait(false)) is not null)
                await writer.WriteLineAsync(JsonSerializer.Serialize(await AnswerAsync(line).ConfigureAwait(false))).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or SocketException)
        {
            // the client went away
        }
    }

    private async Task<object> AnswerAsync(string line)
    {
        try
        {
            var request = JsonNode.Parse(line)?.AsObject() ?? throw new JsonException("empty request");
            switch ((string?)request["op"])
            {
                case "status":
                    var (waiting, running) = runner.Status();
                    return new
                    {
                        ok = true, version = CliFormat.Version, pid = Environment.ProcessId, since = _since, waiting = waiting.Select(w => w.VmId),
                        running = running.Select(j => new
                        {
                            vm = j.Item.VmId, name = j.Item.VmName, policy = j.Item.Run.Policy.Name, what = j.Progress?.What,
                            done = j.Progress?.DoneBytes ?? 0, total = j.Progress?.TotalBytes ?? 0, new_bytes = j.Progress?.NewBytes,
                            bytes_per_second = j.Progress?.BytesPerSecond ?? 0, eta_seconds = j.Progress?.Eta?.TotalSeconds,
                        }),
                    };
                case "backup":
                    var vm = (int?)request["vm"] ?? throw new JsonException("backup needs \"vm\"");
                    var queued = await runner.SubmitAsync(vm, (bool?)request["full"] ?? false, _stop.Token).ConfigureAwait(false);
                    logger.LogInformation("Backup of VM {VmId} asked for over the local socket ({Result})", vm, queued ? "queued" : "already queued or running");
                    return new { ok = true, queued };
                case "cancel":
                    var target = (int?)request["vm"] ?? throw new JsonException("cancel needs \"vm\"");
                    return new { ok = true, cancelled = runner.CancelVm(target) };
                default:
                    return new { ok = false, error = $"unknown op '{request["op"]}' (status, backup, cancel)" };
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException or ProxyBackup.OpenNebula.OneException)
        {
            return new { ok = false, error = e.Message };
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _listener.Dispose();
        if (_loop is not null) await _loop.ConfigureAwait(false);
        try { File.Delete(path); } catch (IOException) { }
        _stop.Dispose();
    }

    /// <summary>The CLI's side: one request, one answer; null when no daemon listens.</summary>
    public static async Task<JsonObject?> AskAsync(string path, object request, CancellationToken ct)
    {
        if (!File.Exists(path)) return null;
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try { await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false); }
        catch (SocketException) { return null; }
        using var stream = new NetworkStream(socket, ownsSocket: false);
        using var reader = new StreamReader(stream, Encoding.UTF8);
        await using var writer = new StreamWriter(stream, new UTF8Encoding(false)) { AutoFlush = true, NewLine = "\n" };
        await writer.WriteLineAsync(JsonSerializer.Serialize(request)).ConfigureAwait(false);
        var answer = await reader.ReadLineAsync(ct).ConfigureAwait(false);
        return answer is null ? null : JsonNode.Parse(answer)?.AsObject();
    }
}
