using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>What a fault rule does to a matching call.</summary>
public enum FaultAction
{
    /// <summary>Refuse the call with an OpenNebula failure reply (code and message configurable).</summary>
    Error,

    /// <summary>Close the connection without answering, before the call is processed.</summary>
    DropBefore,

    /// <summary>Process the call, then close the connection: the answer is lost, the effect is not.</summary>
    DropAfter,

    /// <summary>Accept the operation; its transient state never ends.</summary>
    Stuck,

    /// <summary>Accept the operation; the driver then fails it (VM back to its state, ERROR set).</summary>
    FailAsync,

    /// <summary>Only add latency.</summary>
    Delay,
}

/// <summary>
/// One rule: which calls (method name, "*" or a prefix ending in "*"), when (the Nth matching call,
/// or at random with a rate), how many times, and what happens.
/// </summary>
public sealed record FaultRule
{
    public string Method { get; init; } = "*";
    public int? Nth { get; init; }
    public double? Rate { get; init; }
    public int? Times { get; init; }
    [JsonConverter(typeof(JsonStringEnumConverter<FaultAction>))]
    public FaultAction Action { get; init; } = FaultAction.Error;
    public int? Code { get; init; }
    public string? Message { get; init; }
    public int LatencyMs { get; init; }

    public bool Matches(string method) =>
        Method == "*" || Method == method || (Method.EndsWith('*') && method.StartsWith(Method[..^1], StringComparison.Ordinal));

    /// <summary>Parses the flag form: <c>one.vm.attach,nth=2,action=error,code=2048,message=...</c>.</summary>
    public static FaultRule Parse(string text)
    {
        var parts = text.Split(',');
        var rule = new FaultRule { Method = parts[0].Trim() };
        foreach (var part in parts.Skip(1))
        {
            var kv = part.Split('=', 2);
            if (kv.Length != 2) throw new FormatException($"Fault option '{part}' must be key=value.");
            var (key, value) = (kv[0].Trim().ToLowerInvariant(), kv[1].Trim());
            rule = key switch
            {
                "nth" => rule with { Nth = int.Parse(value, CultureInfo.InvariantCulture) },
                "rate" => rule with { Rate = double.Parse(value, CultureInfo.InvariantCulture) },
                "times" => rule with { Times = int.Parse(value, CultureInfo.InvariantCulture) },
                "action" => rule with { Action = Enum.Parse<FaultAction>(value.Replace("-", "", StringComparison.Ordinal), ignoreCase: true) },
                "code" => rule with { Code = int.Parse(value, CultureInfo.InvariantCulture) },
                "message" => rule with { Message = value },
                "latency" or "latencyms" => rule with { LatencyMs = int.Parse(value, CultureInfo.InvariantCulture), Action = rule.Action },
                _ => throw new FormatException($"Unknown fault option '{key}' (nth, rate, times, action, code, message, latency)."),
            };
        }
        return rule;
    }
}

public sealed record FaultPlan([property: JsonPropertyName("rules")] List<FaultRule> Rules)
{
    public static FaultPlan FromJson(string json) =>
        JsonSerializer.Deserialize<FaultPlan>(json, new JsonSerializerOptions { PropertyNameCaseInsensitive = true })
        ?? throw new FormatException("Empty fault plan.");
}

/// <summary>The decision for one call.</summary>
public sealed record FaultDecision(FaultAction? Action, int LatencyMs, OneErrorCode Code, string? Message)
{
    public static readonly FaultDecision None = new(null, 0, OneErrorCode.Internal, null);
}

/// <summary>Applies fault rules to calls; rules can be replaced at run time (sim.faults.set).</summary>
public sealed class SimFaults
{
    private readonly object _gate = new();
    private readonly Random _random;
    private List<(FaultRule Rule, int Seen, int Fired)> _rules = [];

    public SimFaults(int seed = 1) => _random = new Random(seed);

    public void Set(IEnumerable<FaultRule> rules)
    {
        lock (_gate) _rules = [.. rules.Select(r => (r, 0, 0))];
    }

    public void Add(FaultRule rule)
    {
        lock (_gate) _rules.Add((rule, 0, 0));
    }

    public FaultDecision Decide(string method)
    {
        lock (_gate)
        {
            var latency = 0;
            FaultDecision? decision = null;
            for (var i = 0; i < _rules.Count; i++)
            {
                var (rule, seen, fired) = _rules[i];
                if (!rule.Matches(method)) continue;
                seen++;
                var due = rule.Nth is { } n ? seen >= n && fired < (rule.Times ?? 1)
                    : rule.Rate is { } rate ? _random.NextDouble() < rate && (rule.Times is null || fired < rule.Times)
                    : rule.Times is null || fired < rule.Times;
                if (due)
                {
                    fired++;
                    latency += rule.LatencyMs;
                    if (rule.Action != FaultAction.Delay && decision is null)
                        decision = new FaultDecision(rule.Action, 0, (OneErrorCode)(rule.Code ?? (int)OneErrorCode.Internal), rule.Message);
                }
                _rules[i] = (rule, seen, fired);
            }
            return (decision ?? FaultDecision.None) with { LatencyMs = latency };
        }
    }
}
