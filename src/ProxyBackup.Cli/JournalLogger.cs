using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;

namespace ProxyBackup.Cli;

/// <summary>
/// Logs to systemd's journal over its native protocol (systemd.journal-fields(7)): one datagram per
/// entry with MESSAGE, PRIORITY and SYSLOG_IDENTIFIER, and every named value of the message and of
/// its scopes as a field of its own (JOB_ID, VM_ID, POLICY), so that
/// <c>journalctl -u proxybackup VM_ID=42</c> finds one VM's lines. The journal stamps each entry:
/// no timestamp of ours (docs/operations.md, "Logs").
/// </summary>
internal sealed class JournalLoggerProvider(string socketPath) : ILoggerProvider, ISupportExternalScope
{
    /// <summary>A datagram must fit the journal socket's buffer: a longer value (a message, an error) is cut, with a mark.</summary>
    private const int MaxValueChars = 16 << 10;

    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly UnixDomainSocketEndPoint _journal = new(socketPath);
    private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

    /// <summary>
    /// Whether a run logs to the journal (Daemon:Log): "journal", or "auto" when systemd connected
    /// standard error to it, which JOURNAL_STREAM names by device and inode (sd_journal_stream_fd(3));
    /// the variable alone may be inherited by a daemon started by hand from a service's shell.
    /// </summary>
    public static bool Chosen(string log, string socketPath)
    {
        if (log != "auto") return log == "journal";
        if (!File.Exists(socketPath) || Environment.GetEnvironmentVariable("JOURNAL_STREAM") is not { } stream || stream.Split(':') is not [_, var inode]) return false;
        // The journal's stream is a socket: /proc shows standard error as "socket:[INODE]".
        try { return new FileInfo("/proc/self/fd/2").LinkTarget == $"socket:[{inode}]"; }
        catch (IOException) { return false; }
    }

    public ILogger CreateLogger(string categoryName) => new JournalLogger(this, categoryName);

    public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

    public void Dispose() => _socket.Dispose();

    /// <summary>The field name the journal accepts for a value's name: JobId becomes JOB_ID.</summary>
    internal static string FieldName(string name)
    {
        var b = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (char.IsUpper(c) && i > 0 && (char.IsLower(name[i - 1]) || char.IsDigit(name[i - 1]))) b.Append('_');
            b.Append(char.IsAsciiLetterOrDigit(c) ? char.ToUpperInvariant(c) : '_');
        }
        var field = b.ToString().TrimStart('_', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9');
        // The journal takes names of 64 characters at most.
        return field.Length > 64 ? field[..64] : field;
    }

    internal static int Priority(LogLevel level) => level switch
    {
        LogLevel.Critical => 2,
        LogLevel.Error => 3,
        LogLevel.Warning => 4,
        LogLevel.Information => 6,
        _ => 7,
    };

    /// <summary>One entry in the native format: NAME=value lines, or NAME, a 64-bit length and the bytes where the value has a newline.</summary>
    internal static byte[] Entry(IEnumerable<KeyValuePair<string, string>> fields)
    {
        using var buffer = new MemoryStream();
        Span<byte> length = stackalloc byte[8];
        foreach (var (name, value) in fields)
        {
            buffer.Write(Encoding.ASCII.GetBytes(name));
            var bytes = Encoding.UTF8.GetBytes(value);
            if (Array.IndexOf(bytes, (byte)'\n') < 0)
            {
                buffer.WriteByte((byte)'=');
                buffer.Write(bytes);
            }
            else
            {
                buffer.WriteByte((byte)'\n');
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)bytes.Length);
                buffer.Write(length);
                buffer.Write(bytes);
            }
            buffer.WriteByte((byte)'\n');
        }
        return buffer.ToArray();
    }

    private void Write(string category, LogLevel level, string message, IEnumerable<KeyValuePair<string, object?>> values)
    {
        static string Cut(string value) => value.Length > MaxValueChars ? value[..MaxValueChars] + " [cut]" : value;
        var fields = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["MESSAGE"] = Cut(message),
            ["PRIORITY"] = Priority(level).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["SYSLOG_IDENTIFIER"] = "proxybackup",
            ["LOGGER"] = category,
        };
        foreach (var (name, value) in values)
        {
            if (name == "{OriginalFormat}" || value is null) continue;
            var field = FieldName(name);
            if (field.Length > 0) fields.TryAdd(field, Cut(Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? ""));
        }
        try
        {
            _socket.SendTo(Entry(fields), _journal);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // The journal is gone (stopped, restarting), or the host disposed the provider while jobs
            // still drain: there is nowhere left to say so, and a job must not fail for it.
        }
    }

    private sealed class JournalLogger(JournalLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => provider._scopes.Push(state);

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel)) return;
            var values = new List<KeyValuePair<string, object?>>();
            if (state is IEnumerable<KeyValuePair<string, object?>> own) values.AddRange(own);
            provider._scopes.ForEachScope((scope, list) =>
            {
                if (scope is IEnumerable<KeyValuePair<string, object?>> named) list.AddRange(named);
            }, values);
            var message = formatter(state, exception);
            // The reason, never the stack (docs/operations.md, "Exit codes").
            if (exception is not null) message += $": {exception.Message}";
            provider.Write(category, logLevel, message, values);
        }
    }
}
