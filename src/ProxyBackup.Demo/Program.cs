using ProxyBackup.Contracts;
using ProxyBackup.Demo;

try
{
    return await DemoCommand.Build().Parse(args).InvokeAsync(new() { EnableDefaultExceptionHandler = false });
}
catch (Exception e) when (e is UserFacingException or IOException or UnauthorizedAccessException)
{
    Console.Error.WriteLine($"proxybackup-demo: {e.Message}");
    return 1;
}
