using System.CommandLine;
using ProxyBackup.Contracts;

namespace ProxyBackup.Cli;

/// <summary>The snapshot set's options, the same for `vm backup` and `policy add` (docs/operations.md, "Consistency of the snapshot set").</summary>
internal static class ConsistencyOptions
{
    public static readonly Option<ConsistencyMode> Mode = new("--consistency")
    {
        DefaultValueFactory = _ => ConsistencyMode.Sequential,
        Description = "Sequential: disks snapshotted one after another while the VM runs (each crash-consistent alone); Suspend: the VM suspended for its snapshot set (one moment for all disks), then resumed.",
    };

    public static readonly Option<string?> Pre = new("--pre-command") { Description = "Run by /bin/sh before the first snapshot (PROXYBACKUP_VM_ID, _VM_NAME, _VM_IP in its environment); a non-zero exit fails the backup before any snapshot." };
    public static readonly Option<string?> Post = new("--post-command") { Description = "Run by /bin/sh after the snapshot set, also when it failed; a non-zero exit is a warning." };

    public static readonly Option<int> Timeout = new("--command-timeout") { DefaultValueFactory = _ => 300, Description = "Seconds each command may run before it is stopped." };

    public static IEnumerable<Option> All => [Mode, Pre, Post, Timeout];

    /// <summary>Whether the command line names any of them (a backup asked for this way runs in the CLI, not the daemon).</summary>
    public static bool Given(ParseResult p) => All.Any(o => p.GetResult(o) is { Implicit: false });

    public static SnapshotConsistency From(ParseResult p) => new()
    {
        Mode = p.GetValue(Mode), PreCommand = p.GetValue(Pre), PostCommand = p.GetValue(Post), CommandTimeoutSeconds = p.GetValue(Timeout),
    };
}
