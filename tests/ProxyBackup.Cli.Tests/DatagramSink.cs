using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Text;

namespace ProxyBackup.Cli.Tests;

/// <summary>
/// A Unix datagram socket a test binds where systemd's would be (NOTIFY_SOCKET, the journal's
/// socket), keeping every datagram the daemon sends, as systemd receives them.
/// </summary>
public sealed class DatagramSink : IDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly ConcurrentQueue<byte[]> _received = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _reader;

    public DatagramSink(string path)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _reader = Task.Run(async () =>
        {
            var buffer = new byte[1 << 17];
            try
            {
                while (true) _received.Enqueue(buffer[..await _socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)]);
            }
            catch (OperationCanceledException)
            {
                // Dispose
            }
        });
    }

    public string Path { get; }

    /// <summary>
    /// Waits until what was received satisfies <paramref name="condition"/>: a datagram the daemon
    /// sent is in the socket's queue at once, but read by this sink's loop a moment later.
    /// </summary>
    public async Task WaitForAsync(Func<DatagramSink, bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition(this))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"Not received within {timeout}: {string.Join(" | ", Texts)}");
            await Task.Delay(50);
        }
    }

    public IReadOnlyList<string> Texts => [.. _received.Select(Encoding.UTF8.GetString)];

    /// <summary>The datagrams read as journal entries (systemd's native protocol: NAME=value, or NAME, a 64-bit length and the bytes).</summary>
    public IReadOnlyList<IReadOnlyDictionary<string, string>> JournalEntries => [.. _received.Select(ParseEntry)];

    private static Dictionary<string, string> ParseEntry(byte[] data)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal);
        var at = 0;
        while (at < data.Length)
        {
            var end = Array.IndexOf(data, (byte)'\n', at);
            var line = data.AsSpan(at, end - at);
            var eq = line.IndexOf((byte)'=');
            if (eq >= 0)
            {
                fields[Encoding.ASCII.GetString(line[..eq])] = Encoding.UTF8.GetString(line[(eq + 1)..]);
                at = end + 1;
            }
            else
            {
                var length = (int)BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(end + 1, 8));
                fields[Encoding.ASCII.GetString(line)] = Encoding.UTF8.GetString(data, end + 9, length);
                at = end + 9 + length + 1;
            }
        }
        return fields;
    }

    public void Dispose()
    {
        _stop.Cancel();
        _reader.Wait();
        _socket.Dispose();
        _stop.Dispose();
        File.Delete(Path);
    }
}
