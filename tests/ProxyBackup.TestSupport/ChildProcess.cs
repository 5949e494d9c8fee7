using System.Diagnostics;

namespace ProxyBackup.TestSupport;

/// <summary>A process started by a test, killed (with its children) at dispose.</summary>
public sealed class ChildProcess : IDisposable
{
    private ChildProcess(Process process) => Process = process;

    public Process Process { get; }

    public static ChildProcess Start(string file, params string[] args) => Start(new Dictionary<string, string>(), file, args);

    /// <summary>Starts a process with these variables added to (or replacing those of) the test's environment.</summary>
    public static ChildProcess Start(IReadOnlyDictionary<string, string> environment, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        foreach (var (name, value) in environment) psi.Environment[name] = value;
        return new ChildProcess(Process.Start(psi) ?? throw new InvalidOperationException($"Could not start {file}."));
    }

    /// <summary>Runs a command to its end; returns its exit code and what it wrote.</summary>
    public static Task<(int Code, string Output, string Error)> RunAsync(string file, params string[] args) => RunAsync(new Dictionary<string, string>(), file, args);

    /// <summary>Runs a command to its end with these variables in its environment; returns its exit code and what it wrote.</summary>
    public static async Task<(int Code, string Output, string Error)> RunAsync(IReadOnlyDictionary<string, string> environment, string file, params string[] args)
    {
        using var p = Start(environment, file, args);
        var output = p.Process.StandardOutput.ReadToEndAsync();
        var error = p.Process.StandardError.ReadToEndAsync();
        await p.Process.WaitForExitAsync();
        return (p.Process.ExitCode, await output, await error);
    }

    /// <summary>Runs a short command to its end, blocking (for a fact attribute's constructor and test set-up): exit code, output, error.</summary>
    public static (int Code, string Output, string Error) Run(string file, params string[] args)
    {
        using var p = Start(file, args);
        var error = p.Process.StandardError.ReadToEndAsync();
        var output = p.Process.StandardOutput.ReadToEnd();
        p.Process.WaitForExit();
        return (p.Process.ExitCode, output, error.Result);
    }

    public async Task<string> ReadLineAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var line = await Process.StandardOutput.ReadLineAsync(cts.Token);
        return line ?? throw new InvalidOperationException($"Process exited early: {await Process.StandardError.ReadToEndAsync(cts.Token)}");
    }

    public void Dispose()
    {
        try
        {
            if (!Process.HasExited)
            {
                Process.Kill(entireProcessTree: true);
                Process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException) { }
        Process.Dispose();
    }
}
