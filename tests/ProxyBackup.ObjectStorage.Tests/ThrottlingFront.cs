using System.Net;

namespace ProxyBackup.ObjectStorage.Tests;

/// <summary>
/// An HTTP front before the S3 test server that answers the requests it is told to refuse with
/// 503 SlowDown, as a busy S3 does, and passes the others on unchanged (the Host header too, so
/// that their signatures still hold).
/// </summary>
internal sealed class ThrottlingFront : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly HttpClient _upstream = new() { Timeout = TimeSpan.FromMinutes(1) };
    private readonly Uri _target;
    private readonly Func<int, bool> _refuse;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _seen = new();
    private readonly Task _loop;
    private int _refused;

    /// <param name="refuse">From how many times the same request (method and URL) came, this time included: whether it gets 503 SlowDown.</param>
    public ThrottlingFront(Uri target, Func<int, bool> refuse)
    {
        _target = target;
        _refuse = refuse;
        for (var attempt = 0; ; attempt++)
        {
            Port = Random.Shared.Next(20000, 60000);
            _listener.Prefixes.Clear();
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            try { _listener.Start(); break; }
            catch (HttpListenerException) when (attempt < 20) { }
        }
        _loop = Task.Run(ServeAsync);
    }

    public int Port { get; }
    public int Refused => Volatile.Read(ref _refused);

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try { context = await _listener.GetContextAsync(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { return; }
            _ = Task.Run(() => AnswerAsync(context));
        }
    }

    private async Task AnswerAsync(HttpListenerContext context)
    {
        var (request, response) = (context.Request, context.Response);
        try
        {
            if (_refuse(_seen.AddOrUpdate($"{request.HttpMethod} {request.RawUrl}", 1, (_, n) => n + 1)))
            {
                Interlocked.Increment(ref _refused);
                response.StatusCode = 503;
                var body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"u8.ToArray();
                response.ContentType = "application/xml";
                await response.OutputStream.WriteAsync(body);
                return;
            }
            using var forward = new HttpRequestMessage(new HttpMethod(request.HttpMethod), new Uri(_target, request.RawUrl));
            var content = new MemoryStream();
            await request.InputStream.CopyToAsync(content);
            if (content.Length > 0 || request.HttpMethod is "PUT" or "POST") forward.Content = new ByteArrayContent(content.ToArray());
            foreach (var name in request.Headers.AllKeys.OfType<string>())
            {
                var value = request.Headers[name]!;
                if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase) || name.Equals("Connection", StringComparison.OrdinalIgnoreCase)) continue;
                if (name.Equals("Host", StringComparison.OrdinalIgnoreCase)) forward.Headers.Host = value;
                else if (!forward.Headers.TryAddWithoutValidation(name, value)) forward.Content?.Headers.TryAddWithoutValidation(name, value);
            }
            using var answer = await _upstream.SendAsync(forward);
            response.StatusCode = (int)answer.StatusCode;
            foreach (var header in answer.Headers.Concat(answer.Content.Headers))
                if (!header.Key.Equals("Transfer-Encoding", StringComparison.OrdinalIgnoreCase) && !header.Key.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                    response.Headers[header.Key] = string.Join(",", header.Value);
            var bytes = await answer.Content.ReadAsByteArrayAsync();
            response.ContentLength64 = request.HttpMethod == "HEAD" ? answer.Content.Headers.ContentLength ?? 0 : bytes.Length;
            if (request.HttpMethod != "HEAD") await response.OutputStream.WriteAsync(bytes);
        }
        catch (Exception e) when (e is HttpListenerException or IOException or HttpRequestException) { }
        finally
        {
            try { response.Close(); }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException) { }
        }
    }

    public void Dispose()
    {
        _listener.Stop();
        _listener.Close();
        _loop.Wait(TimeSpan.FromSeconds(5));
        _upstream.Dispose();
    }
}
