using ProxyBackup.Contracts;
using System.Globalization;
using System.Reflection;
using System.Text.Json;

namespace ProxyBackup.Cli;

/// <summary>Parsing and printing of sizes, durations and JSON for the command line.</summary>
public static class CliFormat
{
    /// <summary>
    /// Every --json output: snake_case names, as the repository's own files and the daemon's socket
    /// use, enums as strings and times as ISO 8601 (docs/operations.md, "Machine-readable output").
    /// </summary>
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        Converters = { new System.Text.Json.Serialization.JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>"4M", "64K", "1G", or bytes.</summary>
    public static long ParseSize(string text)
    {
        var t = text.Trim().ToUpperInvariant().TrimEnd('B', 'I');
        long unit = 1;
        if (t.Length > 0 && char.IsLetter(t[^1]))
        {
            unit = t[^1] switch { 'K' => 1L << 10, 'M' => 1L << 20, 'G' => 1L << 30, 'T' => 1L << 40, _ => throw new CliException($"'{text}' is not a size (e.g. 4M, 64K, 1G).") };
            t = t[..^1];
        }
        return long.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n * unit : throw new CliException($"'{text}' is not a size (e.g. 4M, 64K, 1G).");
    }

    /// <summary>"30m", "24h", "7d", "2w".</summary>
    public static TimeSpan ParseDuration(string text)
    {
        var t = text.Trim().ToLowerInvariant();
        if (t.Length >= 2 && double.TryParse(t[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var n) && n >= 0)
            return t[^1] switch
            {
                's' => TimeSpan.FromSeconds(n), 'm' => TimeSpan.FromMinutes(n), 'h' => TimeSpan.FromHours(n),
                'd' => TimeSpan.FromDays(n), 'w' => TimeSpan.FromDays(7 * n),
                _ => throw new CliException($"'{text}' is not a duration (e.g. 30m, 24h, 7d, 2w)."),
            };
        throw new CliException($"'{text}' is not a duration (e.g. 30m, 24h, 7d, 2w).");
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 40 => $"{bytes / (double)(1L << 40):0.00} TiB",
        >= 1L << 30 => $"{bytes / (double)(1L << 30):0.00} GiB",
        >= 1L << 20 => $"{bytes / (double)(1L << 20):0.0} MiB",
        >= 1L << 10 => $"{bytes / 1024.0:0.0} KiB",
        _ => $"{bytes} B",
    };

    /// <summary>One running job from the daemon's status: what it does, bytes, MB/s and ETA.</summary>
    public static string RunningJob(System.Text.Json.Nodes.JsonNode job)
    {
        var done = job["done"]!.GetValue<long>();
        var total = job["total"]!.GetValue<long>();
        var line = $"VM {job["vm"]} ({job["name"]}): {(string?)job["what"] ?? "starting"}";
        if (total == 0) return line;
        line += $", {Bytes(done)} of {Bytes(total)} ({100.0 * done / total:0} %), {job["bytes_per_second"]!.GetValue<double>() / 1e6:0.0} MB/s";
        if (job["new_bytes"]?.GetValue<long>() is { } stored) line += $", new {Bytes(stored)}";
        return job["eta_seconds"]?.GetValue<double>() is { } eta ? line + $", ETA {TimeSpan.FromSeconds(Math.Round(eta)):hh\\:mm\\:ss}" : line;
    }

    /// <summary>The version this binary reports (VERSION and the commit, as --version prints it).</summary>
    public static string Version { get; } = typeof(CliFormat).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    public static void PrintJson<T>(T value) => Console.WriteLine(JsonSerializer.Serialize(value, Json));
}

/// <summary>Bad input on the command line: one message that says what to fix.</summary>
public sealed class CliException(string message) : UserFacingException(message);
