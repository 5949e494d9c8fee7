using System.CommandLine;
using ProxyBackup.Cli;
using ProxyBackup.Repository;

var root = new RootCommand("proxybackup: agentless backup of OpenNebula VMs through a proxy VM.");
root.Subcommands.Add(RepositoryCommands.Build());

var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
try
{
    return await root.Parse(args).InvokeAsync(config);
}
catch (Exception e) when (e is CliException or RepositoryException or IOException or UnauthorizedAccessException or ArgumentException)
{
    Console.Error.WriteLine($"proxybackup: {e.Message}");
    return 1;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("proxybackup: cancelled.");
    return 130;
}
