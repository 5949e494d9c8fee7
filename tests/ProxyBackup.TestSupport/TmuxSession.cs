using System.Diagnostics;

namespace ProxyBackup.TestSupport;

/// <summary>A program run in a detached tmux session, typed at with send-keys and read with capture-pane, as a person would.</summary>
public sealed class TmuxSession : IDisposable
{
    private readonly string _socket = "pbtest-" + Guid.NewGuid().ToString("N")[..8];

    public TmuxSession(string command, int width = 140, int height = 45)
    {
        Tmux("new-session", "-d", "-s", "main", "-x", width.ToString(System.Globalization.CultureInfo.InvariantCulture), "-y", height.ToString(System.Globalization.CultureInfo.InvariantCulture), command + "; sleep 600");
    }

    private string Tmux(params string[] args)
    {
        var psi = new ProcessStartInfo("tmux") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add("-L");
        psi.ArgumentList.Add(_socket);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var output = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        return p.ExitCode == 0 ? output : throw new InvalidOperationException($"tmux {string.Join(' ', args)}: {p.StandardError.ReadToEnd()}");
    }

    public string Screen() => Tmux("capture-pane", "-t", "main", "-p");

    /// <summary>Keys as tmux names them: text, Enter, Down, C-u ...</summary>
    public void Send(params string[] keys)
    {
        foreach (var k in keys) Tmux("send-keys", "-t", "main", k);
    }

    /// <summary>Waits until the screen shows the text; fails with the screen when it does not.</summary>
    public async Task WaitForAsync(string text, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (!Screen().Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"'{text}' never appeared. The screen:\n{Screen()}");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until the screen no longer shows the text (a dialog closed): what is behind it shows all along.</summary>
    public async Task WaitForGoneAsync(string text, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(30));
        while (Screen().Contains(text, StringComparison.Ordinal))
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"'{text}' never went away. The screen:\n{Screen()}");
            await Task.Delay(100);
        }
    }

    /// <summary>Answers a prompt: waits for it, types the answer, presses Enter.</summary>
    public async Task AnswerAsync(string prompt, string answer)
    {
        await WaitForAsync(prompt);
        if (answer.Length > 0) Send("-l", answer);
        Send("Enter");
    }

    /// <summary>Moves a selection prompt to the item and takes it.</summary>
    public async Task ChooseAsync(string title, string item)
    {
        await WaitForAsync(title);
        for (var i = 0; i < 20 && !Screen().Split('\n').Any(l => l.TrimStart().StartsWith("> " + item, StringComparison.Ordinal)); i++)
        {
            Send("Down");
            await Task.Delay(80);
        }
        Send("Enter");
        await Task.Delay(150);
    }

    public void Dispose()
    {
        try { Tmux("kill-server"); }
        catch (InvalidOperationException) { }
    }
}
