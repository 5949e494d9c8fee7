using System.CommandLine;
using ProxyBackup.Cli;
using ProxyBackup.Contracts;

// Native calls use x86_64's and aarch64's open(2) flags (Native.cs); elsewhere nothing would be safe.
if (System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture is not (System.Runtime.InteropServices.Architecture.X64 or System.Runtime.InteropServices.Architecture.Arm64))
{
    Console.Error.WriteLine($"proxybackup: runs on x86_64 and aarch64 Linux only; this machine is {System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture}.");
    return 1;
}

var root = new RootCommand("proxybackup: agentless backup of OpenNebula VMs through a proxy VM.");
root.Subcommands.Add(RepositoryCommands.Build());
foreach (var c in CloudCommands.Build()) root.Subcommands.Add(c);
root.Subcommands.Add(PolicyCommands.Build());
root.Subcommands.Add(DaemonCommand.Build());
root.Subcommands.Add(CatalogCommands.Build());
root.Subcommands.Add(StatusCommand.Build());
root.Subcommands.Add(StorageCommand.Build());
root.Subcommands.Add(ConsoleCommand.Build());
root.Subcommands.Add(ConfigureCommand.Build());
root.Subcommands.Add(FilesCommand.Build());

// On SIGTERM or Ctrl+C a job cancels and then cleans up on the cloud (snapshot, attached disk,
// temporary image) before it returns. System.CommandLine's default gives an action 2 s before it
// ends the process with 143, in the middle of that cleanup; the systemd unit allows 15 minutes.
var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = TimeSpan.FromMinutes(15) };
// No response files: '@daily' is a schedule, not a file to read arguments from.
var parsed = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
if (parsed.Errors.Count > 0)
{
    // A usage error is told apart from a failure by its exit code (docs/operations.md, "Exit codes").
    foreach (var error in parsed.Errors) Console.Error.WriteLine($"proxybackup: {error.Message}");
    var path = new List<string>();
    for (var r = parsed.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
        path.Insert(0, r.Command is RootCommand ? "proxybackup" : r.Command.Name);
    Console.Error.WriteLine($"proxybackup: see '{string.Join(' ', path)} --help'.");
    return 2;
}
try
{
    return await parsed.InvokeAsync(config);
}
catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
{
    // Written for the operator (UserFacingException), or the system's own word on a file: one line.
    Console.Error.WriteLine($"proxybackup: {e.Message}");
    return 1;
}
catch (System.Data.Common.DbException e)
{
    // The catalog's database (the SQLite file, or the shared PostgreSQL server) refused or is unreachable.
    Console.Error.WriteLine($"proxybackup: the catalog cannot be used: {e.Message}. Check Catalog:Path or Catalog:Postgres and that the database server runs (docs/operations.md, \"A shared catalog\").");
    return 1;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("proxybackup: cancelled.");
    return 130;
}
catch (Exception e)
{
    // A fault of the program, not of the input: still one line and a documented code, never a
    // stack trace on the operator's screen (docs/operations.md, "Exit codes").
    Console.Error.WriteLine($"proxybackup: internal error ({e.GetType().Name}): {e.Message}. Please report it with 'proxybackup jobs log'.");
    return 70;
}
